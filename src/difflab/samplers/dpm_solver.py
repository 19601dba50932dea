"""DPM-Solver++ multistep (Lu et al. 2022): exponential integrators of the probability-flow ODE in the data prediction.

With the half log-SNR l = lambda / 2 = log(alpha / sigma) and h = l_s - l_t, the flow is exactly
  x_s = (sigma_s / sigma_t) x_t + sigma_s int_{l_t}^{l_s} e^l x0_hat(l) dl,
and the solvers expand x0_hat(l) in l around l_t from the last evaluations.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from difflab.condition import Condition
from difflab.errors import UserError
from difflab.noise import NoiseSource
from difflab.prediction import Denoiser
from difflab.samplers.walk import StepCallback, StepHook, after_step, evaluate, final_step, intervals
from difflab.schedules.base import Schedule
from difflab.utils import bcast


def _multistep(denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, order: int,
               cond: Optional[Condition], hook: Optional[StepHook], callback: Optional[StepCallback]) -> Tensor:
    hist: list[tuple[float, Tensor]] = []  # (half log-SNR, x0_hat) of earlier evaluations, newest last
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return final_step(hook, i, pred)
        l_t = _half_log_snr(schedule, t)
        hist = (hist + [(l_t, pred.x0)])[-order:]
        if len(hist) == 2:  # DPM-Solver++(2M), Algorithm 2 (also 3M's second step): D = (1 + 1/2r) m0 - 1/2r m1
            r = (l_t - hist[0][0]) / (_half_log_snr(schedule, s) - l_t)
            x = _exp_step(schedule, x, t, s, [(l_t, hist[1][1] + (hist[1][1] - hist[0][1]) / (2 * r))])
        else:  # first step: DDIM (Lu et al. 2022, eq. 9 with x0); 3M: the quadratic through three, integrated exactly
            x = _exp_step(schedule, x, t, s, hist)
        x = after_step(hook, i, s, x)
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: Optional[NoiseSource] = None,
    cond: Optional[Condition] = None, hook: Optional[StepHook] = None, callback: Optional[StepCallback] = None,
) -> Tensor:
    """DPM-Solver++(2M): second order, one evaluation per step."""
    return _multistep(denoiser, x, schedule, grid, 2, cond, hook, callback)


@torch.no_grad()
def sample_dpmpp_3m(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: Optional[NoiseSource] = None,
    cond: Optional[Condition] = None, hook: Optional[StepHook] = None, callback: Optional[StepCallback] = None,
) -> Tensor:
    """DPM-Solver++(3M): one evaluation per step (lower order for the first two). Unlike the reference code's '3M',
    which halves the second difference's weight and is second order, this integrates the interpolating quadratic
    exactly: third order (measured ~4 on Gaussian data, where the reference's is ~2)."""
    return _multistep(denoiser, x, schedule, grid, 3, cond, hook, callback)


def exponential_weights(us: list[float], h: float) -> list[float]:
    """Weights b_j with sigma_s int_{l_t}^{l_s} e^l P(l) dl = alpha_s sum_j b_j m_j, where P interpolates the points
    (l_t + u_j, m_j): b = V^{-T} I with V_jk = u_j^k and I_k = int_0^h u^k e^{u - h} du = h^k - k I_{k-1}."""
    K = len(us)
    u = torch.tensor(us, dtype=torch.float64)
    V = u[:, None] ** torch.arange(K, dtype=torch.float64)  # (K, K) Vandermonde
    integrals = [-math.expm1(-h)]
    for k in range(1, K):
        integrals.append(h**k - k * integrals[-1])
    return torch.linalg.solve(V.T, torch.tensor(integrals, dtype=torch.float64)).tolist()


@torch.no_grad()
def sample_dpmpp_pc(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: Optional[NoiseSource] = None,
    cond: Optional[Condition] = None, hook: Optional[StepHook] = None, callback: Optional[StepCallback] = None,
    order: int = 3,
) -> Tensor:
    """DPM-Solver++ multistep of `order` as predictor, and a corrector of order + 1 that retakes each step with the
    evaluation at its end included (an Adams–Moulton step in the half log-SNR, like UniPC's corrector): one
    evaluation per step, like the predictor alone.

    The final step to sigma = 0 is of second order: along the flow x0_hat(sigma~) = y_0 - c sigma~^2 + O(sigma~^3)
    (y = x / alpha), so the last two evaluations extrapolate to y_0 (when their levels differ by 2x or more); the
    last one is first moved to the corrected point by d x0_hat / d y ~ 1 at small sigma~.
    """
    if order < 1:
        raise UserError(f"the multistep order must be at least 1, got {order}")
    hist: list[tuple[float, Tensor]] = []  # (l, x0_hat) of earlier evaluations, newest last
    prev: Optional[tuple[Tensor, Tensor]] = None  # (t, x) where the last step started, corrected

    def correct(t: Tensor, x0: Tensor) -> Tensor:  # retake prev -> t through the old points and the new one
        return _exp_step(schedule, prev[1], prev[0], t, (hist + [(_half_log_snr(schedule, t), x0)])[-(order + 1):])

    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        if s == 0:
            return after_step(hook, i, s, _final_extrapolation(schedule, t, x, pred.x0, hist, correct)) \
                if prev is not None else final_step(hook, i, pred)
        if prev is not None:
            x = after_step(hook, i - 1, t, correct(t, pred.x0))  # corrector
        hist = (hist + [(_half_log_snr(schedule, t), pred.x0)])[-order:]
        prev = (t, x)
        x = after_step(hook, i, s, _exp_step(schedule, x, t, s, hist))  # predictor
    return x


def _final_extrapolation(schedule: Schedule, t: Tensor, x: Tensor, x0: Tensor, hist: list[tuple[float, Tensor]],
                         correct) -> Tensor:
    """y_0 from the last two evaluations, the newest moved to the corrected point (see sample_dpmpp_pc)."""
    d_min = x0 + (correct(t, x0) - x) / bcast(schedule.alpha(t), x)  # x0_hat at the corrected point
    s_min, s_prev = math.exp(-_half_log_snr(schedule, t)), math.exp(-hist[-1][0])  # sigma~ = e^{-l}
    if s_prev < 2 * s_min:  # close levels would amplify the evaluations' errors: first order, as every sampler
        return d_min
    return (s_prev**2 * d_min - s_min**2 * hist[-1][1]) / (s_prev**2 - s_min**2)


def _half_log_snr(schedule: Schedule, t: Tensor) -> float:
    return float(0.5 * schedule.log_snr(t))


def _exp_step(schedule: Schedule, x: Tensor, t: Tensor, s: Tensor, pts: list[tuple[float, Tensor]]) -> Tensor:
    """x_s = (sigma_s / sigma_t) x_t + alpha_s sum_j b_j m_j: the polynomial through pts integrated exactly."""
    l_t = _half_log_snr(schedule, t)
    b = exponential_weights([lj - l_t for lj, _ in pts], _half_log_snr(schedule, s) - l_t)
    out = bcast(schedule.sigma(s) / schedule.sigma(t), x) * x
    for bj, (_, m) in zip(b, pts):
        out = out + bcast(schedule.alpha(s) * bj, x) * m
    return out
