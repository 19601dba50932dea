"""Adaptive Dormand–Prince RK5(4) (Dormand & Prince 1980) for the probability-flow ODE and its likelihood."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from difflab.errors import UserError
from difflab.condition import Condition
from difflab.noise import NoiseSource
from difflab.prediction import Denoiser, Prediction
from difflab.samplers.walk import StepCallback, StepHook, after_step, evaluate, final_step
from difflab.schedules.base import Schedule
from difflab.schedules.grids import check_grid

# Butcher tableau: nodes c, stage weights A, fifth-order weights B5 (also the last row of A: FSAL), error E = B5 - B4
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
      (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
      (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
      (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


def dopri5(fn: Callable[[Tensor, Tensor], Tensor], y: Tensor, t0: float, t1: float, *, rtol: float = 1e-5,
           atol: float = 1e-5, max_steps: int = 100_000) -> tuple[Tensor, int]:
    """Integrate dy/dt = fn(t, y) from t0 to t1 (either direction); returns (y(t1), evaluations of fn).

    The error of a step is the RMS over all entries of (y5 - y4) / (atol + rtol max(|y|, |y_new|)); a step is taken
    when it is <= 1, and the next step size is 0.9 err^(-1/5) times this one, clamped to [0.2, 10] times.
    """
    if rtol <= 0 or atol <= 0:
        raise UserError(f"RK45 tolerances must be positive, got rtol={rtol}, atol={atol}")
    t, direction, nfe = float(t0), 1.0 if t1 > t0 else -1.0, 1
    k1 = fn(torch.tensor(t, dtype=torch.float64), y)
    h = 0.01 * abs(t1 - t0)  # first trial step: the controller adapts it at once
    for _ in range(max_steps):
        if direction * (t1 - t) <= 0:
            return y, nfe
        h = min(h, abs(t1 - t))
        ks = [k1]
        for i in range(1, 7):
            yi = y + direction * h * sum(a * k for a, k in zip(_A[i], ks) if a != 0.0)
            ks.append(fn(torch.tensor(t + direction * _C[i] * h, dtype=torch.float64), yi))
        nfe += 6
        y_new = yi  # stage 7 is evaluated at the fifth-order solution (FSAL)
        err = direction * h * sum(e * k for e, k in zip(_E, ks) if e != 0.0)
        scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        ratio = float((err / scale).square().mean().sqrt())
        if ratio <= 1.0:
            t, y, k1 = t + direction * h, y_new, ks[-1]
        h *= min(10.0, max(0.2, 0.9 * (ratio if ratio > 0 else 1e-10) ** -0.2))
    raise UserError(f"RK45 did not reach t = {t1} in {max_steps} steps (stiff or diverging); loosen rtol/atol")


def flow_in_log_sigma(evaluate: Callable[[Tensor, Tensor], Prediction], schedule: Schedule):
    """The probability-flow ODE in u = log sigma~ for y = x / alpha: dy/du = y - x0_hat(alpha y, t(u)).

    Smooth in u for every schedule (a discrete table's kinks in t disappear), so an adaptive solver takes few steps.
    `evaluate(x, t)` is one network evaluation at a scalar time t. Returns (velocity(u, y), t_of_u).
    """
    def t_of_u(u: Tensor) -> Tensor:
        return schedule.t_of_log_snr(-2 * u)

    def velocity(u: Tensor, y: Tensor) -> Tensor:
        t = t_of_u(u)
        a = schedule.alpha(t).to(y.dtype)
        return y - evaluate(a * y, t).x0

    return velocity, t_of_u


def log_sigma_tilde(schedule: Schedule, t: float) -> float:
    """u = log(sigma / alpha) = -lambda / 2 at time t."""
    return float(-0.5 * schedule.log_snr(torch.tensor(t, dtype=torch.float64)))


@torch.no_grad()
def sample_rk45(
    denoiser: Denoiser, x: Tensor, schedule: Schedule, grid: Tensor, *, noise: Optional[NoiseSource] = None,
    cond: Optional[Condition] = None, hook: Optional[StepHook] = None, callback: Optional[StepCallback] = None,
    rtol: float = 1e-5, atol: float = 1e-5,
) -> Tensor:
    """The probability-flow ODE by adaptive RK45 in u = log sigma~, from the grid's first time to its last time above 0,
    then the final denoising step if the grid ends at 0; inner grid times are not used: the tolerances set the cost.
    The hook sees the end of the solve (step 0) and the final step (step 1)."""
    g = check_grid(grid)
    t0, t_end = float(g[0]), float(g[-2]) if g[-1] == 0 else float(g[-1])
    velocity, _ = flow_in_log_sigma(lambda xx, t: evaluate(denoiser, xx, t, cond), schedule)
    if t_end < t0:
        a0 = schedule.alpha(torch.tensor(t0, dtype=torch.float64)).to(x.dtype)
        y, _ = dopri5(velocity, x / a0, log_sigma_tilde(schedule, t0), log_sigma_tilde(schedule, t_end),
                      rtol=rtol, atol=atol)
        x = after_step(hook, 0, g[-2] if g[-1] == 0 else g[-1],
                       schedule.alpha(torch.tensor(t_end, dtype=torch.float64)).to(y.dtype) * y)
    if g[-1] == 0:
        return final_step(hook, 1, evaluate(denoiser, x, g[-2], cond, callback, 1))  # the final denoising step
    return x
