"""The reverse-time SDE (seed: 'Continuous-time diffusion models'; Anderson 1982), solved by Euler–Maruyama.

  dx = [f(t) x - g(t)^2 grad log q_t(x)] dt + g(t) dw_bar,   run from t = 1 down to 0
For the VP SDE f = -beta(t)/2 and g^2 = beta(t), the seed's equation.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.prediction import Condition, Denoiser
from difflab.samplers.noise import NoiseSource
from difflab.samplers.walk import GridWalk, StepCallback, scalar
from difflab.schedules.base import Schedule


def reverse_sde_step(schedule: Schedule, t: Tensor, s: Tensor, x: Tensor, score: Tensor, z: Tensor) -> Tensor:
    """One Euler–Maruyama step t -> s < t: x + [f x - g^2 score](s - t) + g sqrt(t - s) z."""
    f, g2 = scalar(schedule.f(t), x), scalar(schedule.g2(t), x)
    dt = scalar(s - t, x)  # negative: time runs backwards
    return x + (f * x - g2 * score) * dt + torch.sqrt(-g2 * dt) * z


@torch.no_grad()
def sample_euler_maruyama(
    denoiser: Denoiser, x_T: Tensor, schedule: Schedule, grid: Tensor, *, noise: NoiseSource,
    cond: Condition = None, clip: Optional[tuple[float, float]] = None, callback: Optional[StepCallback] = None,
) -> Tensor:
    """Euler–Maruyama on the reverse-time SDE: one network evaluation per interval (first order)."""
    walk = GridWalk(denoiser, x_T, grid, cond, clip, callback)
    for _, t, s, pred in walk:
        walk.x = reverse_sde_step(schedule, t, s, walk.x, pred.score, noise.randn_like(walk.x))
    return walk.x
