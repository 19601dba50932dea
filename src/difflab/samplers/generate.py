"""Drive a sampler over many samples in batches; sample k depends only on (seed, k), never on the batch."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from difflab.prediction import Denoiser
from difflab.samplers.ancestral import sample_ancestral
from difflab.samplers.walk import StepCallback
from difflab.samplers.noise import NoiseSource
from difflab.schedules.base import Schedule


def generate(
    denoiser: Denoiser,
    shape: Sequence[int],
    n: int,
    schedule: Schedule,
    grid: Tensor,
    *,
    seed: int = 0,
    batch_size: int = 256,
    labels: Optional[Tensor] = None,
    device: torch.device | str = "cpu",
    on_step: Optional[Callable[[], None]] = None,
    callback: Optional[StepCallback] = None,
    sampler: Callable[..., Tensor] = sample_ancestral,
    **sampler_kwargs,
) -> Tensor:
    """(n, *shape) samples by any sampler (default Algorithm 2); x_T and every z come from per-sample streams."""
    out = []
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        noise = NoiseSource.for_indices(seed, idx)
        x_T = schedule.prior_sample(noise.randn(shape)).to(device)  # Algorithm 2, line 1 (CPU streams: any device)
        cond = labels[idx].to(device) if labels is not None else None

        def cb(i, t, x, pred):
            if callback is not None:
                callback(i, t, x, pred)
            if on_step is not None:
                on_step()

        out.append(sampler(denoiser, x_T, schedule, grid, noise=noise, cond=cond, callback=cb,
                                    **sampler_kwargs).cpu())
    return torch.cat(out)
