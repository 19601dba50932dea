"""Langevin dynamics on the score (seed: 'The score function'): predictor-corrector and annealed Langevin sampling.

A Langevin step x <- x + e grad log p(x) + sqrt(2 e) z leaves p invariant as e -> 0 (Song & Ermon 2019).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.errors import UserError
from difflab.prediction import Condition, Denoiser, Prediction
from difflab.samplers.noise import NoiseSource
from difflab.samplers.sde import reverse_sde_step
from difflab.samplers.walk import GridWalk, StepCallback, scalar
from difflab.schedules.base import Schedule


def langevin_step(x: Tensor, score: Tensor, step: Tensor, z: Tensor) -> Tensor:
    """x + e score + sqrt(2 e) z, with e (B, 1, ...) or a scalar."""
    return x + step * score + torch.sqrt(2 * step) * z


def snr_step(schedule: Schedule, t: Tensor, snr: float, like: Tensor) -> Tensor:
    """Step e = 2 (snr sigma_t)^2: Song et al.'s 2 (snr |z| / |score|)^2 with |score| ~ |z| / sigma_t, its value where
    noise dominates; taken from the schedule rather than per sample, so a sample sitting on a mode (score ~ 0) cannot
    get an unbounded step, and no sample's step depends on its batch."""
    return scalar(2 * (snr * schedule.sigma(t)) ** 2, like)


def _check(snr: float, steps: int, what: str) -> None:
    if snr <= 0 or steps < 1:
        raise UserError(f"{what} needs snr > 0 and at least 1 step, got snr={snr}, steps={steps}")


@torch.no_grad()
def sample_predictor_corrector(
    denoiser: Denoiser, x_T: Tensor, schedule: Schedule, grid: Tensor, *, noise: NoiseSource,
    cond: Condition = None, clip: Optional[tuple[float, float]] = None, callback: Optional[StepCallback] = None,
    snr: float = 0.1, corrector_steps: int = 1,
) -> Tensor:
    """Euler–Maruyama predictor t -> s, then `corrector_steps` Langevin corrector steps at s (signal-to-noise `snr`)."""
    _check(snr, corrector_steps, "the Langevin corrector")
    walk = GridWalk(denoiser, x_T, grid, cond, clip, callback)
    for _, t, s, pred in walk:
        x = reverse_sde_step(schedule, t, s, walk.x, pred.score, noise.randn_like(walk.x))
        step = snr_step(schedule, s, snr, x)
        for _ in range(corrector_steps):
            x = langevin_step(x, walk.denoise(x, s).score, step, noise.randn_like(x))
        walk.x = x
    return walk.x


@torch.no_grad()
def sample_annealed_langevin(
    denoiser: Denoiser, x_T: Tensor, schedule: Schedule, grid: Tensor, *, noise: NoiseSource,
    cond: Condition = None, clip: Optional[tuple[float, float]] = None, callback: Optional[StepCallback] = None,
    snr: float = 0.3, langevin_steps: int = 2,
) -> Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): `langevin_steps` steps of size
    e_i = 2 (snr sigma_i)^2 (their eps sigma_i^2 / sigma_L^2) at each grid level above t_min, then the final denoising
    step. Their algorithm lives in the VE view y = x / alpha, where levels differ by noise only; here x is carried to
    the next level by alpha_s / alpha_t, which is that view for any schedule (a no-op for VE and EDM)."""
    _check(snr, langevin_steps, "annealed Langevin dynamics")
    walk = GridWalk(denoiser, x_T, grid, cond, clip, callback)
    for _, t, s, pred in walk:
        step, x = snr_step(schedule, t, snr, walk.x), walk.x
        for k in range(langevin_steps):
            p: Prediction = pred if k == 0 else walk.denoise(x, t)
            x = langevin_step(x, p.score, step, noise.randn_like(x))
        walk.x = scalar(schedule.alpha(s) / schedule.alpha(t), x) * x  # same y = x / alpha at the next level
    return walk.x
