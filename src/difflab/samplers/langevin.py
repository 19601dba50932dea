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
from difflab.samplers.ancestral import ancestral_step
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
    """Reverse-diffusion predictor t -> s (the reverse kernel p_theta(x_s | x_t) with the analytic variance: Song et
    al. 2021's predictor, exact for the SDE's linear part at any stride), then `corrector_steps` Langevin corrector
    steps at s (signal-to-noise `snr`)."""
    _check(snr, corrector_steps, "the Langevin corrector")
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return final_step(hook, i, pred)
        x = ancestral_step(schedule, t, s, pred, noise.randn_like(x))  # predictor
        step = snr_step(schedule, s, snr, x)
        for _ in range(corrector_steps):  # corrector: Langevin at level s
            x = langevin_step(x, evaluate(denoiser, x, s, cond).score, step, noise.randn_like(x))
        x = after_step(hook, i, s, x)
    return x


@torch.no_grad()
def sample_annealed_langevin(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: NoiseSource,
    cond: Optional[Condition] = None, hook: Optional[StepHook] = None, callback: Optional[StepCallback] = None,
    snr: float = 0.3, langevin_steps: int = 1,
) -> Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): `langevin_steps` steps of size
    e_i = 2 (snr sigma_i)^2 (their eps sigma_i^2 / sigma_L^2) at each grid level above t_min, then the final denoising
    step; each step is followed by an evaluation at its result, so a level costs langevin_steps + 1.

    Between levels x moves by the reverse kernel p_theta(x_s | x_t) with the analytic variance, from that last
    evaluation. Their carry keeps y = x / alpha, which leaves the noise of level t in a sample of level s: a few
    Langevin steps cannot remove it, the excess grows from level to level, and more levels made it worse
    (docs/samplers.md). The reverse kernel hands each level a sample of about its own law, so the Langevin steps
    only correct, and more evaluations converge."""
    _check(snr, langevin_steps, "annealed Langevin dynamics")
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return final_step(hook, i, pred)
        step = snr_step(schedule, t, snr, x)
        for _ in range(langevin_steps):
            x = langevin_step(x, pred.score, step, noise.randn_like(x))
            pred = evaluate(denoiser, x, t, cond)
        x = after_step(hook, i, s, ancestral_step(schedule, t, s, pred, noise.randn_like(x)))  # to level s
    return x
