"""The probability-flow ODE (Song et al. 2021): dx/dt = f(t) x - g(t)^2 / 2 grad log q_t(x), same marginals, no noise.

Heun steps it in t; EDM's Heun steps the same flow in sigma~ = sigma / alpha, where it reads
d(x / alpha) / d sigma~ = (x / alpha - x0_hat) / sigma~ (Karras et al. 2022, eq. 4 with s(t) = alpha).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.prediction import Condition, Denoiser, Prediction
from difflab.samplers.noise import NoiseSource
from difflab.samplers.walk import GridWalk, StepCallback, scalar
from difflab.schedules.base import Schedule


def pf_ode_velocity(schedule: Schedule, t: Tensor, x: Tensor, pred: Prediction) -> Tensor:
    """dx/dt = f(t) x - g(t)^2 / 2 score (the probability-flow ODE)."""
    return scalar(schedule.f(t), x) * x - 0.5 * scalar(schedule.g2(t), x) * pred.score


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser, x_T: Tensor, schedule: Schedule, grid: Tensor, *, noise: Optional[NoiseSource] = None,
    cond: Condition = None, clip: Optional[tuple[float, float]] = None, callback: Optional[StepCallback] = None,
) -> Tensor:
    """Heun's method (explicit trapezoid, second order) on the probability-flow ODE in t: 2 evaluations per step."""
    walk = GridWalk(denoiser, x_T, grid, cond, clip, callback)
    for _, t, s, pred in walk:
        x, h = walk.x, scalar(s - t, walk.x)
        d1 = pf_ode_velocity(schedule, t, x, pred)
        x_euler = x + h * d1
        d2 = pf_ode_velocity(schedule, s, x_euler, walk.denoise(x_euler, s))
        walk.x = x + h * 0.5 * (d1 + d2)
    return walk.x


def sigma_tilde(schedule: Schedule, t: Tensor) -> Tensor:
    """sigma~(t) = sigma / alpha = exp(-lambda / 2), the noise level of x / alpha."""
    return torch.exp(-0.5 * schedule.log_snr(t))


@torch.no_grad()
def sample_edm_heun(
    denoiser: Denoiser, x_T: Tensor, schedule: Schedule, grid: Tensor, *, noise: Optional[NoiseSource] = None,
    cond: Condition = None, clip: Optional[tuple[float, float]] = None, callback: Optional[StepCallback] = None,
) -> Tensor:
    """EDM's deterministic sampler (Karras et al. 2022, Algorithm 1): Heun in sigma~ on x / alpha, 2 evaluations per
    step; the step to sigma = 0 is the final denoising step. Usually run on the Karras grid."""
    walk = GridWalk(denoiser, x_T, grid, cond, clip, callback)
    for _, t, s, pred in walk:
        a_t, a_s = scalar(schedule.alpha(t), walk.x), scalar(schedule.alpha(s), walk.x)
        st, ss = scalar(sigma_tilde(schedule, t), walk.x), scalar(sigma_tilde(schedule, s), walk.x)
        y = walk.x / a_t  # x~ = x / alpha
        d1 = (y - pred.x0) / st  # Algorithm 1, line 4
        y_euler = y + (ss - st) * d1  # line 5
        d2 = (y_euler - walk.denoise(a_s * y_euler, s).x0) / ss  # line 7
        walk.x = a_s * (y + (ss - st) * 0.5 * (d1 + d2))  # line 8
    return walk.x
