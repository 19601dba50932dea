"""The reverse process p_theta(x_s | x_t) = N(mu_theta, Sigma) between two times t > s, shared by samplers and the ELBO.

Between times s < t the forward kernel is q(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2 I) with alpha_{t|s} = alpha_t /
alpha_s and sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2 = -sigma_t^2 expm1(lambda_t - lambda_s); for a VP
schedule on consecutive discrete steps these are the lecture's sqrt(alpha_t) and beta_t.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from difflab.errors import UserError
from difflab.prediction import Prediction
from difflab.schedules.base import Schedule
from difflab.utils import bcast

VARIANCES = ("posterior", "beta", "learned")  # the bound's (and Algorithm 2's) choices
SAMPLING_VARIANCES = VARIANCES + ("analytic",)  # analytic depends on each sample's eps_hat: for sampling only
X0_VAR_MAX = 1.0  # Var(x_0 | x_t) per dimension cannot exceed this for data in [-1, 1]


@dataclass(frozen=True)
class Step:
    """Scalar coefficients of one step t -> s (float64)."""

    c_xt: Tensor  # mu_q coefficient of x_t: alpha_{t|s} sigma_s^2 / sigma_t^2
    c_x0: Tensor  # mu_q coefficient of x_0: alpha_s sigma_{t|s}^2 / sigma_t^2
    beta: Tensor  # sigma_{t|s}^2 (the lecture's beta_t): the "large" reverse variance
    post_var: Tensor  # sigma_{t|s}^2 sigma_s^2 / sigma_t^2 (the lecture's sigma_t^2): the posterior variance
    noise_x0: Tensor  # sigma_t^2 / alpha_t^2 = e^(-lambda_t): x_t's noise in units of x_0


def step_coefficients(schedule: Schedule, t: Tensor, s: Tensor) -> Step:
    """The lecture's tractable-posterior coefficients for the step t -> s (t, s: float64 tensors of any shape)."""
    a_t, a_s, s_t, s_s = schedule.alpha(t), schedule.alpha(s), schedule.sigma(t), schedule.sigma(s)
    frac = -torch.expm1(schedule.log_snr(t) - schedule.log_snr(s))  # sigma_{t|s}^2 / sigma_t^2, in (0, 1]
    return Step(a_t / a_s * (s_s / s_t) ** 2, a_s * frac, s_t**2 * frac, s_s**2 * frac,
                torch.exp(-schedule.log_snr(t)))


def check_variance(variance: str, allowed: tuple[str, ...] = VARIANCES) -> None:
    if variance not in allowed:
        raise UserError(f"variance must be one of {allowed}, got {variance!r}")


def reverse_mean(step: Step, pred: Prediction) -> Tensor:
    """mu_theta(x_t) = mu_q(x_t, x0_hat): the lecture's Interpretation 1 (and 2, 3 after substitution)."""
    return bcast(step.c_xt, pred.x_t) * pred.x_t + bcast(step.c_x0, pred.x_t) * pred.x0


def reverse_logvar(step: Step, pred: Prediction, variance: str, floor: Tensor | None = None) -> Tensor:
    """log Sigma of p_theta(x_s | x_t): posterior (sigma_t^2), beta (beta_t), or learned interpolation between them.

    `floor` replaces a zero posterior variance (the last step), as DDPM does with sigma_2^2 at t = 1.
    """
    post = step.post_var if floor is None else torch.where(step.post_var > 0, step.post_var, floor)
    if variance == "analytic":
        return torch.log(analytic_var(step, pred)).expand_as(pred.x_t)
    if variance == "posterior":
        lv = torch.log(post)
    elif variance == "beta":
        lv = torch.log(step.beta)
    else:
        if pred.var_frac is None:
            raise UserError("variance 'learned' needs a model trained with train.learn_variance=true")
        f = pred.var_frac  # (B, ...) in [0, 1]: log Sigma = f log beta + (1 - f) log sigma_t^2 (improved DDPM)
        return f * bcast(torch.log(step.beta), f) + (1 - f) * bcast(torch.log(post), f)
    return bcast(lv, pred.x_t).expand_as(pred.x_t)


def analytic_var(step: Step, pred: Prediction) -> Tensor:
    """Analytic-DPM's reverse variance (Bao et al. 2022, eq. 7), per sample: sigma_t^2 + c_x0^2 Var(x_0 | x_t).

    mu_q(x_t, x_0) with x_0 drawn from its posterior instead of fixed at its mean x0_hat has this variance: the
    posterior's own (the lecture's sigma_t^2) plus x_0's spread through mu_q's coefficient c_x0. Per dimension,
    Var(x_0 | x_t) = (sigma_t^2 / alpha_t^2) (1 - |eps_hat|^2 / d) (Tweedie's second moment, Bao et al. Thm 1 with
    this sample's eps_hat for the expectation), clamped to [0, X0_VAR_MAX]. On one table step c_x0 is small and this
    is the posterior variance; across a long stride it adds the spread that x0_hat, a mean, left out: returns
    (B, 1, ...) variances.
    """
    eps2 = pred.eps.flatten(1).pow(2).mean(1)  # (B,) |eps_hat|^2 / d
    x0_var = (bcast(step.noise_x0, eps2) * (1 - eps2)).clamp(0, X0_VAR_MAX)  # (B,)
    var = bcast(step.post_var, eps2) + bcast(step.c_x0, eps2) ** 2 * x0_var
    return var.reshape(-1, *([1] * (pred.x_t.ndim - 1)))
