"""The probability-flow ODE (Song et al. 2021): dx/dt = f(t) x - g(t)^2 / 2 grad log q_t(x), same marginals, no noise.

Heun steps it in t; EDM's Heun steps the same flow in sigma~ = sigma / alpha, where it reads
d(x / alpha) / d sigma~ = (x / alpha - x0_hat) / sigma~ (Karras et al. 2022, eq. 4 with s(t) = alpha).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.condition import Condition
from difflab.noise import NoiseSource
from difflab.precond import sigma_tilde
from difflab.prediction import Denoiser, Prediction
from difflab.samplers.walk import StepCallback, StepHook, after_step, evaluate, final_step, intervals
from difflab.schedules.base import Schedule
from difflab.utils import bcast


def pf_ode_velocity(schedule: Schedule, t: Tensor, x: Tensor, pred: Prediction) -> Tensor:
    """dx/dt = f(t) x - g(t)^2 / 2 score (the probability-flow ODE)."""
    return bcast(schedule.f(t), x) * x - 0.5 * bcast(schedule.g2(t), x) * pred.score


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: Optional[NoiseSource] = None,
    cond: Optional[Condition] = None, hook: Optional[StepHook] = None, callback: Optional[StepCallback] = None,
) -> Tensor:
    """Heun's method (explicit trapezoid, second order) on the probability-flow ODE in t: 2 evaluations per step."""
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return final_step(hook, i, pred)
        h = bcast(s - t, x)
        d1 = pf_ode_velocity(schedule, t, x, pred)
        x_euler = x + h * d1
        d2 = pf_ode_velocity(schedule, s, x_euler, evaluate(denoiser, x_euler, s, cond))
        x = after_step(hook, i, s, x + h * 0.5 * (d1 + d2))
    return x


@torch.no_grad()
def sample_edm_heun(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: Optional[NoiseSource] = None,
    cond: Optional[Condition] = None, hook: Optional[StepHook] = None, callback: Optional[StepCallback] = None,
) -> Tensor:
    """EDM's deterministic sampler (Karras et al. 2022, Algorithm 1): Heun in sigma~ on x / alpha, 2 evaluations per
    step; the step to sigma = 0 is the final denoising step. Usually run on the Karras grid."""
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return final_step(hook, i, pred)
        a_t, a_s = bcast(schedule.alpha(t), x), bcast(schedule.alpha(s), x)
        st, ss = bcast(sigma_tilde(schedule, t), x), bcast(sigma_tilde(schedule, s), x)
        y = x / a_t  # x~ = x / alpha
        d1 = (y - pred.x0) / st  # Algorithm 1, line 4
        y_euler = y + (ss - st) * d1  # line 5
        d2 = (y_euler - evaluate(denoiser, a_s * y_euler, s, cond).x0) / ss  # line 7
        x = after_step(hook, i, s, a_s * (y + (ss - st) * 0.5 * (d1 + d2)))  # line 8
    return x
