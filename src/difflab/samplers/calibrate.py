"""A time grid fitted to one model and one budget: the grid's log-SNR points moved, one at a time, to bring a
deterministic sampler's output closer to the exact probability-flow image of calibration noise.

The reference is the probability-flow ODE solved finely (adaptive RK45) from the same noise; the error is the RMS
distance to it, so the fit has no sampling noise. It costs a reference solve plus about 2 * sweeps * steps sampler
runs on the calibration batch, once per (model, sampler, NFE); the grid is then used like any other.
Use calibration noise apart from the noise you sample with (the bench uses another seed).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from difflab.errors import UserError
from difflab.prediction import Denoiser
from difflab.samplers.registry import SamplerSpec
from difflab.samplers.rk45 import sample_rk45
from difflab.schedules.base import Schedule
from difflab.schedules.grids import check_grid, make_grid


def grid_from_log_snr(schedule: Schedule, lam: Tensor) -> Tensor:
    """1, t(lambda_1) > ... > t(lambda_k), 0: the first jump starts at t = 1, the last step is the final denoising."""
    inner = schedule.t_of_log_snr(lam.sort().values.to(torch.float64)).clamp(max=1 - 1e-9)
    return torch.cat([inner.new_ones(1), inner, inner.new_zeros(1)])


def rms_distance(x: Tensor, reference: Tensor) -> float:
    """sqrt(mean_i |x_i - ref_i|^2): the bench's distance to the exact flow, and what calibration lowers."""
    return float((x - reference).flatten(1).square().sum(1).mean().sqrt())


def flow_distance(spec: SamplerSpec, denoiser: Denoiser, schedule: Schedule, grid: Tensor, x_T: Tensor,
                  reference: Tensor, options: dict | None = None) -> float:
    """RMS distance between the sampler's images of x_T and the exact flow images (inf if anything is not finite)."""
    d = rms_distance(spec.fn(denoiser, x_T, schedule, grid, **(options or {})), reference)
    return d if math.isfinite(d) else math.inf


def calibrate_grid(spec: SamplerSpec, denoiser: Denoiser, schedule: Schedule, steps: int, x_T: Tensor, *,
                   start: str = "focus", sweeps: int = 6, step0: float = 0.5, reference: Tensor | None = None,
                   options: dict | None = None, log: Callable[[str], None] | None = None) -> Tensor:
    """Coordinate descent on the grid's interior log-SNR values, moves of step0 / k in sweep k, from the `start` grid.

    Returns a grid of `steps` intervals for `spec`; its error on x_T is never worse than the starting grid's."""
    if spec.stochastic or spec.evals is None:
        raise UserError("grid calibration needs a deterministic fixed-grid sampler (ddim, heun, edm, dpmpp_*)")
    if steps < 3:
        raise UserError(f"grid calibration needs at least 3 steps, got {steps}")
    if log:
        log(f"calibrating a {steps}-step grid on {len(x_T)} noise draws: an exact-flow reference, then "
            f"{2 * sweeps} sampler runs per grid point")
    with torch.no_grad():
        if reference is None:
            reference = sample_rk45(denoiser, x_T, schedule, make_grid("uniform", schedule, 2), rtol=1e-8, atol=1e-8)
        lam = schedule.log_snr(make_grid(start, schedule, steps)[1:-1])  # the interior points, decreasing t
        error = lambda lam: flow_distance(spec, denoiser, schedule, grid_from_log_snr(schedule, lam), x_T,  # noqa: E731
                                          reference, options)
        best = error(lam)
        for sweep in range(1, sweeps + 1):
            move = step0 / sweep
            for i in range(len(lam)):
                for delta in (-move, move):
                    trial = lam.clone()
                    trial[i] += delta
                    if len(trial.unique()) < len(trial):
                        continue
                    e = error(trial)
                    if e < best:
                        best, lam = e, trial
            if log:
                log(f"calibration sweep {sweep}: RMS distance to the flow {best:.4g}")
    return check_grid(grid_from_log_snr(schedule, lam))
