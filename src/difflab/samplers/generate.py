"""Drive a sampler over many samples in batches; sample k depends only on (seed, k), never on the batch."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from difflab.condition import Condition
from difflab.noise import NoiseSource
from difflab.prediction import Denoiser
from difflab.samplers.ancestral import sample_ancestral
from difflab.samplers.walk import RowHook, StepCallback, StepHook
from difflab.schedules.base import Schedule
from difflab.schedules.grids import check_grid


def start_point(schedule: Schedule, t0: Tensor, noise: NoiseSource, shape: Sequence[int],
                init: Optional[Tensor] = None) -> Tensor:
    """x at the grid's first time t0: the prior sample (Algorithm 2, line 1), scaled by sigma(t0) / sigma(1) when a
    grid starts from noise below t = 1 (the 'stable' grid; EDM's x ~ N(0, sigma_max^2) the same way: the data's
    share alpha^2 Var(x_0) is dropped); or init noised to t0 by the diffusion kernel x_t0 = alpha(t0) init +
    sigma(t0) z (SDEdit, image-to-image)."""
    z = noise.randn(shape)
    if init is None:
        x = schedule.prior_sample(z)
        return x if float(t0) == 1 else x * float(schedule.sigma(t0.double()) / schedule.sigma(torch.ones((), dtype=torch.float64)))
    return schedule.q_sample(init, t0.expand(len(init)), z)


def generate(
    denoiser: Denoiser,
    shape: Sequence[int],
    n: int,
    schedule: Schedule,
    grid: Tensor,
    *,
    seed: int = 0,
    batch_size: int = 256,
    cond: Optional[Condition] = None,
    init: Optional[Tensor] = None,
    device: torch.device | str = "cpu",
    on_step: Optional[Callable[[], None]] = None,
    callback: Optional[StepCallback] = None,
    hook: Optional[StepHook | RowHook] = None,
    sampler: Callable[..., Tensor] = sample_ancestral,
    **sampler_kwargs,
) -> Tensor:
    """(n, *shape) samples by any sampler (default Algorithm 2); x at the grid's first time and every z come from
    per-sample streams. `cond` and `init` (images to start from when the grid starts below t = 1) hold n rows; a
    RowHook is bound to each batch's rows of `cond` and their sample indices (per-row measurements)."""
    grid = check_grid(grid)
    out = []
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        noise = NoiseSource.for_indices(seed, idx)
        x = start_point(schedule, grid[0], noise, shape, init[idx] if init is not None else None).to(device)
        c = cond.index(torch.tensor(idx)).to(device) if cond is not None else None
        hk = hook.bind(c, torch.tensor(idx)) if isinstance(hook, RowHook) else hook

        def cb(i, t, x, pred):
            if callback is not None:
                callback(i, t, x, pred)
            if on_step is not None:
                on_step()

        out.append(sampler(denoiser, x, schedule, grid, noise=noise, cond=c, hook=hk, callback=cb,
                           **sampler_kwargs).cpu())
    return torch.cat(out)
