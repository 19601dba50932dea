"""Ancestral sampling (Algorithm 2) on any decreasing time grid."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.condition import Condition
from difflab.noise import NoiseSource
from difflab.prediction import Denoiser
from difflab.reverse import check_variance, reverse_logvar, reverse_mean, step_coefficients
from difflab.samplers.walk import StepCallback, StepHook, after_step, evaluate, final_step, intervals
from difflab.schedules.base import Schedule


@torch.no_grad()
def sample_ancestral(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: NoiseSource,
    cond: Optional[Condition] = None, variance: str = "posterior", hook: Optional[StepHook] = None,
    callback: Optional[StepCallback] = None,
) -> Tensor:
    """x_s ~ p_theta(x_s | x_t) for consecutive grid times t > s, from x at the grid's first time.

    On the full grid (t = T..1) this is exactly Algorithm 2: mu = mu_q(x_t, x0_hat, t) and sigma_t^2 = posterior
    variance (or beta_t with variance='beta', or the model's own with 'learned'); the last step to t = 0 has z = 0
    (line 3), where mu_q(x_1, x0_hat, 1) = x0_hat: the final denoising step.
    """
    check_variance(variance)
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return final_step(hook, i, pred)
        step = step_coefficients(schedule, t, s)
        mean = reverse_mean(step, pred)  # Algorithm 2, line 4
        x = after_step(hook, i, s, mean + torch.exp(0.5 * reverse_logvar(step, pred, variance)) * noise.randn_like(mean))
    return x
