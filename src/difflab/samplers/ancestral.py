"""Ancestral sampling (Algorithm 2) on any decreasing time grid."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.prediction import Condition, Denoiser
from difflab.reverse import VARIANCES, check_variance, reverse_logvar, reverse_mean, step_coefficients
from difflab.samplers.noise import NoiseSource
from difflab.samplers.walk import GridWalk, StepCallback
from difflab.schedules.base import Schedule
__all__ = ["sample_ancestral", "VARIANCES", "StepCallback"]


@torch.no_grad()
def sample_ancestral(
    denoiser: Denoiser,
    x_T: Tensor,
    schedule: Schedule,
    grid: Tensor,
    *,
    noise: NoiseSource,
    cond: Condition = None,
    variance: str = "posterior",
    clip: Optional[tuple[float, float]] = None,
    callback: Optional[StepCallback] = None,
) -> Tensor:
    """x_s ~ p_theta(x_s | x_t) for consecutive grid times t > s, ending at the grid's last time.

    On the full grid (t = T..1) this is exactly Algorithm 2: mu = mu_q(x_t, x0_hat, t) and sigma_t^2 = posterior
    variance (or beta_t with variance='beta', or the model's own with 'learned'); the last step to t = 0 has z = 0
    (line 3), where mu_q(x_1, x0_hat, 1) = x0_hat: the walk's final denoising step.
    """
    check_variance(variance)
    walk = GridWalk(denoiser, x_T, grid, cond, clip, callback)
    for i, t, s, pred in walk:
        step = step_coefficients(schedule, t, s)
        mean = reverse_mean(step, pred)
        walk.x = mean + torch.exp(0.5 * reverse_logvar(step, pred, variance)) * noise.randn_like(mean)
    return walk.x
