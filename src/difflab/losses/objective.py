"""The training objective per config: Algorithm 1's simple loss, the true ELBO weighting, or a hybrid of both."""
from __future__ import annotations

from dataclasses import replace

from torch import Tensor

from difflab.errors import UserError
from difflab.losses.elbo import term_from_prediction
from difflab.losses.simple import simple_error
from difflab.prediction import Condition, Denoiser, Prediction, scales
from difflab.schedules.base import Schedule

OBJECTIVES = ("simple", "elbo", "hybrid")


def training_loss(denoiser: Denoiser, schedule: Schedule, x0: Tensor, t: Tensor, eps: Tensor, *,
                  parameterization: str, objective: str = "simple", learn_variance: bool = False,
                  hybrid_weight: float = 1e-3, cond: Condition = None) -> Tensor:
    """(B,) loss at times t (float64 (B,)): i / T on a discrete schedule, U[t_min, 1] on an SDE; one network call.

    simple: |target - target_theta|^2 (Algorithm 1); elbo: the bound's own term L_{t-1} (L_0 at t = 1) per
    dimension, so T * E_t[loss] is the negative ELBO; hybrid: simple + hybrid_weight * elbo, where with a learned
    variance the mean is detached in the ELBO part, so the bound trains only the variance (improved DDPM).
    """
    if objective not in OBJECTIVES:
        raise UserError(f"train.objective must be one of {OBJECTIVES}, got {objective!r}")
    alpha, sigma = scales(schedule, t.double(), x0)
    x_t = alpha * x0 + sigma * eps  # diffusion kernel q(x_t | x_0)
    pred = denoiser(x_t, t.to(x0), cond)
    simple = simple_error(pred, Prediction(x_t, alpha, sigma, x0, eps), parameterization)
    if objective == "simple":
        return simple
    variance = "learned" if learn_variance else "posterior"
    if objective == "hybrid" and learn_variance:
        pred = replace(pred, x0=pred.x0.detach(), eps=pred.eps.detach())  # the bound trains the variance only
    discrete = x0.ndim == 4  # images: discretized decoder at t = 1
    steps = (t.double() * schedule.T).round().long()  # the ELBO's integer steps (discrete schedules only)
    vlb = term_from_prediction(pred, schedule, x0, steps, variance=variance, discrete=discrete).float() / x0[0].numel()
    if objective == "elbo":
        return vlb
    return simple + (hybrid_weight if objective == "hybrid" else 1.0) * vlb
