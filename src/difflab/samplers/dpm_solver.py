"""DPM-Solver++ multistep (Lu et al. 2022): exponential integrators of the probability-flow ODE in the data prediction.

With the half log-SNR l = lambda / 2 = log(alpha / sigma) and h = l_s - l_t, the flow is exactly
  x_s = (sigma_s / sigma_t) x_t + sigma_s int_{l_t}^{l_s} e^l x0_hat(l) dl,
and the solvers expand x0_hat(l) in l around l_t from the last evaluations.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from difflab.prediction import Condition, Denoiser
from difflab.samplers.noise import NoiseSource
from difflab.samplers.walk import GridWalk, StepCallback, scalar
from difflab.schedules.base import Schedule


def _multistep(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, grid: Tensor, order: int, cond: Condition,
               clip: Optional[tuple[float, float]], callback: Optional[StepCallback]) -> Tensor:
    walk = GridWalk(denoiser, x_T, grid, cond, clip, callback)
    ls, ms = [], []  # half log-SNRs and x0_hat of earlier evaluations, newest last
    for _, t, s, pred in walk:
        l_t, l_s = 0.5 * schedule.log_snr(t), 0.5 * schedule.log_snr(s)
        ls, ms = (ls + [l_t])[-order:], (ms + [pred.x0])[-order:]
        h = l_s - l_t
        em = torch.expm1(-h)  # e^{-h} - 1
        x = scalar(schedule.sigma(s) / schedule.sigma(t), walk.x) * walk.x
        a_s = schedule.alpha(s)
        if len(ms) == 1:  # first step: first order, DDIM (Lu et al. 2022, eq. 9 with x0)
            walk.x = x - scalar(a_s * em, x) * ms[-1]
        elif len(ms) == 2 or order == 2:  # DPM-Solver++(2M), Algorithm 2: D = (1 + 1/2r) m0 - 1/2r m1
            r = (l_t - ls[-2]) / h
            walk.x = x - scalar(a_s * em, x) * (ms[-1] + scalar(1 / (2 * r), x) * (ms[-1] - ms[-2]))
        else:  # 3M: quadratic through (l, m) of the last three, integrated exactly against e^{l - l_s}
            h1, h2 = l_t - ls[-2], ls[-2] - ls[-3]
            d1, d1p = (ms[-1] - ms[-2]) / scalar(h1, x), (ms[-2] - ms[-3]) / scalar(h2, x)
            dd = (d1 - d1p) / scalar(h1 + h2, x)
            m1 = d1 + scalar(h1, x) * dd  # x0_hat' at l_t
            m2 = 2 * dd  # x0_hat''
            phi1, phi2, phi3 = -em, h + em, h**2 - 2 * h - 2 * em  # int_0^h u^k e^{u - h} du * (1, 1, 1) for k = 0, 1, 2
            walk.x = x + scalar(a_s * phi1, x) * ms[-1] + scalar(a_s * phi2, x) * m1 + scalar(a_s * phi3 / 2, x) * m2
    return walk.x


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser, x_T: Tensor, schedule: Schedule, grid: Tensor, *, noise: Optional[NoiseSource] = None,
    cond: Condition = None, clip: Optional[tuple[float, float]] = None, callback: Optional[StepCallback] = None,
) -> Tensor:
    """DPM-Solver++(2M): second order, one evaluation per step."""
    return _multistep(denoiser, x_T, schedule, grid, 2, cond, clip, callback)


@torch.no_grad()
def sample_dpmpp_3m(
    denoiser: Denoiser, x_T: Tensor, schedule: Schedule, grid: Tensor, *, noise: Optional[NoiseSource] = None,
    cond: Condition = None, clip: Optional[tuple[float, float]] = None, callback: Optional[StepCallback] = None,
) -> Tensor:
    """DPM-Solver++(3M): third-order multistep, one evaluation per step (lower order for the first two)."""
    return _multistep(denoiser, x_T, schedule, grid, 3, cond, clip, callback)
