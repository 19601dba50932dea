"""DDIM (Song, Meng & Ermon 2021): x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z on any grid and schedule.

c = eta * sqrt(Sigma_post) is eta times the standard deviation of the tractable posterior q(x_s | x_t, x_0) (the
lecture's sigma_t^2, for any alpha, sigma), so eta = 1 is ancestral sampling (Algorithm 2 with the posterior variance:
alpha_s x0 + sqrt(sigma_s^2 - Sigma_post) eps is exactly mu_q) and eta = 0 is deterministic.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.condition import Condition
from difflab.errors import UserError
from difflab.noise import NoiseSource
from difflab.prediction import Denoiser
from difflab.reverse import step_coefficients
from difflab.samplers.walk import StepCallback, StepHook, after_step, evaluate, final_step, intervals
from difflab.schedules.base import Schedule
from difflab.utils import bcast


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: Optional[NoiseSource] = None,
    cond: Optional[Condition] = None, eta: float = 0.0, hook: Optional[StepHook] = None,
    callback: Optional[StepCallback] = None,
) -> Tensor:
    """One network evaluation per grid interval; returns x at the grid's last time."""
    if eta < 0:
        raise UserError(f"DDIM eta must be >= 0, got {eta}")
    if eta > 0 and noise is None:
        raise UserError("DDIM with eta > 0 draws noise: pass noise=NoiseSource(...)")
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return final_step(hook, i, pred)
        var = eta**2 * step_coefficients(schedule, t, s).post_var  # c^2
        direction = (schedule.sigma(s) ** 2 - var).clamp_min(0).sqrt()
        x = bcast(schedule.alpha(s), x) * pred.x0 + bcast(direction, x) * pred.eps
        if eta > 0:
            x = x + bcast(var.sqrt(), x) * noise.randn_like(x)
        x = after_step(hook, i, s, x)
    return x
