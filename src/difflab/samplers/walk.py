"""What every sampler shares: the grid's intervals, one evaluation of the denoiser, the step hook and the final
denoising step. Each sampler is an explicit loop over the intervals t > s of a decreasing grid, as in its paper.

An interval ending at s = 0 is the final denoising step, x_0 = E[x_0 | x_t] (Tweedie), the limit of every sampler's
update as sigma_s -> 0. A hook may replace x after every step (projection onto measurements, RePaint), including the
final one; a grid may start below t = 1 (SDEdit, image-to-image) from any given x.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from difflab.condition import Condition
from difflab.prediction import Denoiser, Prediction
from difflab.schedules.grids import check_grid

StepCallback = Callable[[int, Tensor, Tensor, Prediction], None]  # (step, t, x_t, prediction)
StepHook = Callable[[int, Tensor, Tensor], Tensor]  # (step, s, x_s) -> the x_s to continue from


@runtime_checkable
class RowHook(Protocol):
    """A step hook that depends on the batch: bound to its rows of the condition and their sample indices (the
    projection onto each row's measurement, with each row's own noise stream)."""

    def bind(self, cond: Optional[Condition], rows: Tensor) -> StepHook: ...


def intervals(grid: Tensor) -> Iterator[tuple[int, Tensor, Tensor]]:
    """(i, t_i, t_{i+1}) over consecutive times of a checked, strictly decreasing grid (float64 scalars)."""
    grid = check_grid(grid)
    for i in range(len(grid) - 1):
        yield i, grid[i], grid[i + 1]


def evaluate(denoiser: Denoiser, x: Tensor, t: Tensor, cond: Optional[Condition] = None,
             callback: Optional[StepCallback] = None, step: Optional[int] = None) -> Prediction:
    """One denoiser call at the scalar time t (float64, broadcast over the batch); the callback sees step `step`."""
    pred = denoiser(x, t.to(torch.float64).expand(x.shape[0]).to(x.device), cond)
    if callback is not None and step is not None:
        callback(step, t, x, pred)
    return pred


def after_step(hook: Optional[StepHook], step: int, s: Tensor, x: Tensor) -> Tensor:
    """x_s as the hook leaves it (unchanged without a hook)."""
    return x if hook is None else hook(step, s, x)


def final_step(hook: Optional[StepHook], step: int, pred: Prediction) -> Tensor:
    """The final denoising step to t = 0: x_0 = E[x_0 | x_t], then the hook."""
    return after_step(hook, step, pred.x0.new_zeros((), dtype=torch.float64), pred.x0)
