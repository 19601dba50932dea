"""Langevin dynamics on the score (seed: 'The score function'): predictor-corrector and annealed Langevin sampling.

A Langevin step x <- x + e grad log p(x) + sqrt(2 e) z leaves p invariant as e -> 0 (Song & Ermon 2019).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.condition import Condition
from difflab.errors import UserError
from difflab.noise import NoiseSource
from difflab.prediction import Denoiser
from difflab.samplers.sde import reverse_sde_step
from difflab.samplers.walk import StepCallback, StepHook, after_step, evaluate, final_step, intervals
from difflab.schedules.base import Schedule
from difflab.utils import bcast


def langevin_step(x: Tensor, score: Tensor, step: Tensor, z: Tensor) -> Tensor:
    """x + e score + sqrt(2 e) z, with e (B, 1, ...) or a scalar."""
    return x + step * score + torch.sqrt(2 * step) * z


def snr_step(schedule: Schedule, t: Tensor, snr: float, like: Tensor) -> Tensor:
    """Step e = 2 (snr sigma_t)^2: Song et al.'s 2 (snr |z| / |score|)^2 with |score| ~ |z| / sigma_t, its value where
    noise dominates; taken from the schedule rather than per sample, so a sample sitting on a mode (score ~ 0) cannot
    get an unbounded step, and no sample's step depends on its batch."""
    return bcast(2 * (snr * schedule.sigma(t)) ** 2, like)


def _check(snr: float, steps: int, what: str) -> None:
    if snr <= 0 or steps < 1:
        raise UserError(f"{what} needs snr > 0 and at least 1 step, got snr={snr}, steps={steps}")


@torch.no_grad()
def sample_predictor_corrector(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: NoiseSource,
    cond: Optional[Condition] = None, hook: Optional[StepHook] = None, callback: Optional[StepCallback] = None,
    snr: float = 0.1, corrector_steps: int = 1,
) -> Tensor:
    """Euler–Maruyama predictor t -> s, then `corrector_steps` Langevin corrector steps at s (signal-to-noise `snr`)."""
    _check(snr, corrector_steps, "the Langevin corrector")
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return final_step(hook, i, pred)
        x = reverse_sde_step(schedule, t, s, x, pred.score, noise.randn_like(x))  # predictor
        step = snr_step(schedule, s, snr, x)
        for _ in range(corrector_steps):  # corrector: Langevin at level s
            x = langevin_step(x, evaluate(denoiser, x, s, cond).score, step, noise.randn_like(x))
        x = after_step(hook, i, s, x)
    return x


@torch.no_grad()
def sample_annealed_langevin(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: NoiseSource,
    cond: Optional[Condition] = None, hook: Optional[StepHook] = None, callback: Optional[StepCallback] = None,
    snr: float = 0.3, langevin_steps: int = 2,
) -> Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): `langevin_steps` steps of size
    e_i = 2 (snr sigma_i)^2 (their eps sigma_i^2 / sigma_L^2) at each grid level above t_min, then the final denoising
    step. Their algorithm lives in the VE view y = x / alpha, where levels differ by noise only; here x is carried to
    the next level by alpha_s / alpha_t, which is that view for any schedule (a no-op for VE and EDM)."""
    _check(snr, langevin_steps, "annealed Langevin dynamics")
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return final_step(hook, i, pred)
        step = snr_step(schedule, t, snr, x)
        for k in range(langevin_steps):
            x = langevin_step(x, (pred if k == 0 else evaluate(denoiser, x, t, cond)).score, step, noise.randn_like(x))
        x = after_step(hook, i, s, bcast(schedule.alpha(s) / schedule.alpha(t), x) * x)  # same y = x / alpha at s
    return x
