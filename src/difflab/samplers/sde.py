"""The reverse-time SDE (seed: 'Continuous-time diffusion models'; Anderson 1982), solved by Euler–Maruyama.

  dx = [f(t) x - g(t)^2 grad log q_t(x)] dt + g(t) dw_bar,   run from t = 1 down to 0
For the VP SDE f = -beta(t)/2 and g^2 = beta(t), the lecture's equation.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.condition import Condition
from difflab.noise import NoiseSource
from difflab.prediction import Denoiser
from difflab.samplers.walk import StepCallback, StepHook, after_step, evaluate, final_step, intervals
from difflab.schedules.base import Schedule
from difflab.utils import bcast


def reverse_sde_step(schedule: Schedule, t: Tensor, s: Tensor, x: Tensor, score: Tensor, z: Tensor) -> Tensor:
    """One Euler–Maruyama step t -> s < t: x + [f x - g^2 score](s - t) + g sqrt(t - s) z."""
    f, g2 = bcast(schedule.f(t), x), bcast(schedule.g2(t), x)
    dt = bcast(s - t, x)  # negative: time runs backwards
    return x + (f * x - g2 * score) * dt + torch.sqrt(-g2 * dt) * z


@torch.no_grad()
def sample_euler_maruyama(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: NoiseSource,
    cond: Optional[Condition] = None, hook: Optional[StepHook] = None, callback: Optional[StepCallback] = None,
) -> Tensor:
    """Euler–Maruyama on the reverse-time SDE: one network evaluation per interval (first order)."""
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return final_step(hook, i, pred)
        x = after_step(hook, i, s, reverse_sde_step(schedule, t, s, x, pred.score, noise.randn_like(x)))
    return x
