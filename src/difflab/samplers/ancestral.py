"""Ancestral sampling (Algorithm 2) on any decreasing time grid."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.condition import Condition
from difflab.noise import NoiseSource
from difflab.prediction import Denoiser, Prediction
from difflab.reverse import SAMPLING_VARIANCES, check_variance, reverse_logvar, reverse_mean, step_coefficients
from difflab.samplers.walk import StepCallback, StepHook, after_step, evaluate, final_step, intervals
from difflab.schedules.base import Schedule


@torch.no_grad()
def sample_ancestral(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: NoiseSource,
    cond: Optional[Condition] = None, variance: str = "analytic", hook: Optional[StepHook] = None,
    callback: Optional[StepCallback] = None,
) -> Tensor:
    """x_s ~ p_theta(x_s | x_t) for consecutive grid times t > s, from x at the grid's first time.

    On the full grid (t = T..1) this is exactly Algorithm 2: mu = mu_q(x_t, x0_hat, t) and sigma_t^2 = posterior
    variance (or beta_t with variance='beta', the model's own with 'learned', or 'analytic': the posterior variance
    plus x_0's own spread, which long strides need); the last step to t = 0 has z = 0 (line 3), where
    mu_q(x_1, x0_hat, 1) = x0_hat: the final denoising step.
    """
    check_variance(variance, SAMPLING_VARIANCES)
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return final_step(hook, i, pred)
        x = after_step(hook, i, s, ancestral_step(schedule, t, s, pred, noise.randn_like(x), variance))
    return x


def ancestral_step(schedule: Schedule, t: Tensor, s: Tensor, pred: Prediction, z: Tensor,
                   variance: str = "analytic") -> Tensor:
    """x_s = mu_theta(x_t) + Sigma^(1/2) z: Algorithm 2, line 4, for the step t -> s (any stride)."""
    step = step_coefficients(schedule, t, s)
    return reverse_mean(step, pred) + torch.exp(0.5 * reverse_logvar(step, pred, variance)) * z
