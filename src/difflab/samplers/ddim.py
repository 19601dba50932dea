"""DDIM (Song, Meng & Ermon 2021): x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z on any grid.

c = eta * sqrt(sigma_s^2 / sigma_t^2 * (1 - alpha_t^2 / alpha_s^2)) is eta times the posterior standard
deviation, so eta = 1 is ancestral sampling (Algorithm 2 with the posterior variance) and eta = 0 is deterministic.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.errors import UserError
from difflab.prediction import Condition, Denoiser
from difflab.samplers.noise import NoiseSource
from difflab.samplers.walk import GridWalk, StepCallback
from difflab.schedules.base import Schedule


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser,
    x_T: Tensor,
    schedule: Schedule,
    grid: Tensor,
    *,
    noise: Optional[NoiseSource] = None,
    cond: Condition = None,
    eta: float = 0.0,
    clip: Optional[tuple[float, float]] = None,
    callback: Optional[StepCallback] = None,
) -> Tensor:
    """One network evaluation per grid interval; returns x at the grid's last time."""
    if eta < 0:
        raise UserError(f"DDIM eta must be >= 0, got {eta}")
    if eta > 0 and noise is None:
        raise UserError("DDIM with eta > 0 draws noise: pass noise=NoiseSource(...)")
    walk = GridWalk(denoiser, x_T, grid, cond, clip, callback)
    for i, t, s, pred in walk:
        a_t, a_s, s_t, s_s = schedule.alpha(t), schedule.alpha(s), schedule.sigma(t), schedule.sigma(s)
        c = eta * (s_s**2 / s_t**2 * (1 - a_t**2 / a_s**2)).clamp_min(0).sqrt()  # eta x posterior std
        direction = (s_s**2 - c**2).clamp_min(0).sqrt()
        dt = pred.x0.dtype
        x = a_s.to(dt) * pred.x0 + direction.to(dt) * pred.eps
        if eta > 0:
            x = x + c.to(dt) * noise.randn_like(x)
        walk.x = x
    return walk.x
