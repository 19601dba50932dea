"""Time grids for samplers: decreasing times from t = 1 (high noise) to t = 0 (the data), chosen apart from the sampler.

A grid of `steps` intervals visits `steps` times from 1 down to the schedule's t_min, then 0: the last interval is the
final denoising step x_0 = E[x_0 | x_{t_min}] (Tweedie), as Algorithm 2's last line with z = 0.

Every grid takes `t_start` (default 1): the grid then runs from t_start < 1 instead, with the same spacing rule on
[t_min, t_start], for a sampler started from a given x at t_start (SDEdit, image-to-image: x_t = alpha x_0 + sigma eps
of an input x_0, the diffusion kernel).
"""
from __future__ import annotations

from typing import Callable

import math

import torch
from torch import Tensor

from difflab.errors import UserError
from difflab.schedules.base import Schedule

GRIDS = ("uniform", "karras", "logsnr", "focus", "stable", "discrete")


def discrete_grid(T: int, steps: int | None = None, t_start: float = 1.0) -> Tensor:
    """Times i / T for i = T, ..., 1, 0 (Algorithm 2's loop); with steps < T, evenly strided, still from T to 0.

    With t_start < 1 the loop starts at step i_0 = round(t_start T) instead of T (steps default i_0, at most i_0).
    """
    t_start = float(t_start)
    if not 0 < t_start <= 1:
        raise UserError(f"t_start must be in (0, 1], got {t_start:g}: give the time the sampler starts from")
    i0 = math.floor(t_start * T + 0.5)  # the nearest step (halves up)
    if i0 < 1:
        raise UserError(f"t_start = {t_start:g} rounds to step 0 of T = {T}: give t_start >= {0.5 / T:g} "
                        f"(step 1 or later)")
    steps = i0 if steps is None else steps
    if not 1 <= steps <= i0:
        below = f" (the table steps below t_start = {t_start:g})" if i0 < T else ""
        raise UserError(f"sampling steps must be in 1..{i0}{below}, got {steps}")
    i = torch.linspace(i0, 0, steps + 1, dtype=torch.float64).round()
    return i / T


def _finish(t: Tensor) -> Tensor:
    return torch.cat([t, t.new_zeros(1)])


def uniform_grid(schedule: Schedule, steps: int, t_start: float = 1.0) -> Tensor:
    """t uniform from t_start (default 1) to t_min, then 0."""
    t_start = _check_start(schedule, t_start)
    return _finish(torch.linspace(t_start, schedule.t_min, _check(steps), dtype=torch.float64))


def log_snr_grid(schedule: Schedule, steps: int, lambda_range: tuple[float, float] | None = None,
                 t_start: float = 1.0) -> Tensor:
    """lambda(t) uniform from lambda(t_start) (default t_start = 1) to lambda(t_min), then 0 (DPM-Solver's choice).

    With lambda_range (lo, hi) the uniform part spans [max(lo, lambda(t_start)), min(hi, lambda(t_min))], after a first
    jump from t_start when lo > lambda(t_start): for data of unit scale nothing happens below lambda ~ -5, and steps
    are better spent inside.
    """
    t_start = _check_start(schedule, t_start)
    ends = schedule.log_snr(torch.tensor([t_start, schedule.t_min], dtype=torch.float64))
    if lambda_range is None:
        lam = torch.linspace(float(ends[0]), float(ends[1]), _check(steps), dtype=torch.float64)
        return _finish(_pin(schedule.t_of_log_snr(lam), schedule, t_start))
    lo, hi = max(lambda_range[0], float(ends[0])), min(lambda_range[1], float(ends[1]))
    if not lo < hi or _check(steps) < 2:
        raise UserError(f"lambda_range {lambda_range} leaves no room inside the schedule's log-SNR range "
                        f"{float(ends[0]):.2f}..{float(ends[1]):.2f}, or steps < 2")
    if lambda_range[0] <= float(ends[0]):  # no first jump: the window starts at t_start itself
        t = schedule.t_of_log_snr(torch.linspace(lo, hi, steps, dtype=torch.float64))
        t[0] = t_start
        if hi == float(ends[1]):
            t[-1] = schedule.t_min
        return _finish(t)
    inner = schedule.t_of_log_snr(torch.linspace(lo, hi, steps - 1, dtype=torch.float64))
    return _finish(torch.cat([torch.full((1,), t_start, dtype=torch.float64), inner.clamp(max=t_start * (1 - 1e-9))]))


def focus_grid(schedule: Schedule, steps: int, t_start: float = 1.0) -> Tensor:
    """The log-SNR grid on a window that widens with the budget: lambda in [-5 - k, 6 + k], k = log2(steps / 10),
    after a first jump from t_start (default 1) when lambda(t_start) is below the window; by ~100 steps it is the full
    log-SNR grid, so it converges like it.

    With few steps, the ends of the log-SNR range (nothing happens below lambda ~ -5 for unit-scale data; the last
    steps above ~6 refine noise far below the data's scale) cost more than they return. The 10-step window was
    chosen on the 2-D mixture of the sampler bench, the widening on a separate 16-D mixture.
    """
    t_start = _check_start(schedule, t_start)
    k = math.log2(_check(steps) / 10)
    ends = schedule.log_snr(torch.tensor([t_start, schedule.t_min], dtype=torch.float64))
    lo, hi = -5.0 - k, 6.0 + k
    inside = lo <= float(ends[0]) and hi >= float(ends[1])
    if steps < 3 or inside or hi <= float(ends[0]) or lo >= float(ends[1]):  # window covers or misses the range
        return log_snr_grid(schedule, steps, t_start=t_start)
    return log_snr_grid(schedule, steps, (lo, hi), t_start=t_start)


def stable_grid(schedule: Schedule, steps: int, max_step: float = 1.5, t_start: float = 1.0) -> Tensor:
    """The focus window started at its low end, with log-SNR steps of at most max_step: lambda uniform from
    lo = min(-5 - k, -4) to min(6 + k, lo + max_step (steps - 1)), k = log2(steps / 10), then 0.

    From t_start = 1 the sampler's x_T ~ N(0, I) is taken as the noise at lambda = lo (alpha^2 = sigmoid(lo) <= 0.018:
    unit-scale data barely show there), as EDM starts at sigma_max = 80 rather than at the
    schedule's end: no first jump across the empty low-SNR range. Explicit steps are stable only while each covers
    little log-SNR (Euler–Maruyama's drift factor 1 - g^2 dt / sigma^2 is 1 - d lambda, stable for d lambda < 2;
    Heun in sigma~ amplifies denoiser differences by the sigma~ ratio e^(d lambda / 2)): with a small budget the
    window's top end drops instead, and the final denoising step (Tweedie) covers the rest. A given t_start < 1 is
    kept (the given x is at that noise level): the window then starts at lambda(t_start) if that is above lo.
    """
    if not max_step > 0:
        raise UserError(f"the stable grid needs max_step > 0 (log-SNR per step), got {max_step}")
    t_start = _check_start(schedule, t_start)
    k = math.log2(_check(steps) / 10)
    ends = [float(v) for v in schedule.log_snr(torch.tensor([t_start, schedule.t_min], dtype=torch.float64))]
    lo = ends[0] if t_start < 1 else max(min(-5.0 - k, -4.0), ends[0])
    hi = min(6.0 + k, lo + max_step * max(steps - 1, 1), ends[1])
    if not lo < hi:  # the window lies above the schedule's top: plain log-SNR steps
        return log_snr_grid(schedule, steps, t_start=t_start)
    t = schedule.t_of_log_snr(torch.linspace(lo, hi, steps, dtype=torch.float64))
    if lo == ends[0]:
        t[0] = t_start
    if hi == ends[1]:
        t[-1] = schedule.t_min
    return _finish(t)


def karras_grid(schedule: Schedule, steps: int, rho: float = 7.0, t_start: float = 1.0) -> Tensor:
    """sigma~ = sigma / alpha spaced as (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho (EDM eq. 5),
    then 0; s_max = sigma~(t_start) (t_start = 1 by default), s_min = sigma~(t_min)."""
    if rho <= 0:
        raise UserError(f"the Karras grid needs rho > 0, got {rho}")
    t_start = _check_start(schedule, t_start)
    ends = torch.exp(-0.5 * schedule.log_snr(torch.tensor([t_start, schedule.t_min], dtype=torch.float64)))  # sigma~
    u = torch.linspace(0, 1, _check(steps), dtype=torch.float64)
    s = (ends[0] ** (1 / rho) + u * (ends[1] ** (1 / rho) - ends[0] ** (1 / rho))) ** rho
    return _finish(_pin(schedule.t_of_log_snr(-2 * torch.log(s)), schedule, t_start))


def make_grid(name: str, schedule: Schedule, steps: int, rho: float = 7.0,
              lambda_range: tuple[float, float] | None = None, t_start: float = 1.0, max_step: float = 1.5) -> Tensor:
    """The named grid of `steps` intervals from t_start (default 1) down to 0; 'discrete' strides a discrete schedule's
    T steps (Algorithm 2); 'stable' bounds each step's log-SNR change by max_step."""
    if name not in GRID_MAKERS:
        raise UserError(f"grid must be one of {GRIDS}, got {name!r}")
    return GRID_MAKERS[name](schedule, steps, t_start, rho=rho, lambda_range=lambda_range, max_step=max_step)


def _discrete(schedule: Schedule, steps: int, t_start: float, **_) -> Tensor:
    if schedule.steps is None:
        raise UserError("the 'discrete' grid needs a discrete schedule (linear or cosine); use uniform, karras or logsnr")
    return discrete_grid(schedule.steps, steps, t_start)


GRID_MAKERS: dict[str, Callable[..., Tensor]] = {  # name -> (schedule, steps, t_start, **options) -> grid
    "discrete": _discrete,
    "karras": lambda schedule, steps, t_start, rho, **_: karras_grid(schedule, steps, rho, t_start),
    "uniform": lambda schedule, steps, t_start, **_: uniform_grid(schedule, steps, t_start),
    "logsnr": lambda schedule, steps, t_start, lambda_range, **_: log_snr_grid(schedule, steps, lambda_range, t_start),
    "focus": lambda schedule, steps, t_start, **_: focus_grid(schedule, steps, t_start),
    "stable": lambda schedule, steps, t_start, max_step, **_: stable_grid(schedule, steps, max_step, t_start),
}


def _check(steps: int) -> int:
    if steps < 1:
        raise UserError(f"a grid needs at least 1 step, got {steps}")
    return steps


def _check_start(schedule: Schedule, t_start: float) -> float:
    """t_start as a float in (t_min, 1]."""
    t_start = float(t_start)
    if not schedule.t_min < t_start <= 1:
        raise UserError(f"t_start must satisfy t_min = {schedule.t_min:g} < t_start <= 1, got {t_start:g}: give a "
                        f"start time in that range (1 = from pure noise)")
    return t_start


def _pin(t: Tensor, schedule: Schedule, t_start: float = 1.0) -> Tensor:
    """Put the end points exactly on t_start and t_min (the inverse of lambda is exact only to rounding)."""
    t = t.clone()
    t[-1] = schedule.t_min
    t[0] = t_start
    return t


def check_grid(grid: Tensor) -> Tensor:
    """A grid must be 1-D, strictly decreasing, inside [0, 1]."""
    grid = torch.as_tensor(grid, dtype=torch.float64)
    if grid.ndim != 1 or grid.numel() < 2:
        raise UserError("a time grid needs at least two times, from high noise down to 0")
    if not bool((grid[1:] < grid[:-1]).all()):
        raise UserError("a time grid must run from high noise to low (strictly decreasing times)")
    if not bool((grid >= 0).all() and (grid <= 1).all()):
        raise UserError(f"grid times must lie in [0, 1], got {grid.min().item():g}..{grid.max().item():g}")
    return grid


def on_table(grid: Tensor, T: int) -> Tensor:
    """A grid's times moved to the nearest table step i / T (a discrete-trained network saw only those), repeats
    dropped; the first time and the final 0 stay."""
    grid = check_grid(grid)
    snapped = (grid * T).round() / T
    snapped[0], snapped[-1] = grid[0], grid[-1]
    keep = torch.cat([torch.ones(1, dtype=torch.bool), snapped[1:] < snapped[:-1]])
    return check_grid(snapped[keep])
