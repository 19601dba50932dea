"""The loop every sampler shares: walk a decreasing grid, ask the denoiser at each time, clip, count, report.

The walk yields the intervals t > s with s > 0; an interval ending at s = 0 is the final denoising step, which the
walk takes itself: x_0 = E[x_0 | x_t] (Tweedie), the limit of every sampler's update as sigma_s -> 0.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional

from torch import Tensor

from difflab.prediction import Condition, Denoiser, Prediction, clip_x0
from difflab.schedules.grids import check_grid

StepCallback = Callable[[int, Tensor, Tensor, Prediction], None]  # (step, t, x_t, prediction)


class GridWalk:
    """Iterate (i, t, s, prediction) over consecutive grid times t > s > 0; the sampler sets `.x` after each step."""

    def __init__(self, denoiser: Denoiser, x_T: Tensor, grid: Tensor, cond: Condition = None,
                 clip: Optional[tuple[float, float]] = None, callback: Optional[StepCallback] = None):
        self.denoiser, self.x, self.grid = denoiser, x_T, check_grid(grid)
        self.cond, self.clip, self.callback = cond, clip, callback
        self.n = len(self.grid) - 1  # intervals
        self.nfe = 0  # network evaluations so far

    def denoise(self, x: Tensor, t: Tensor) -> Prediction:
        """One network evaluation at (x, t), clipped if asked."""
        self.nfe += 1
        pred = self.denoiser(x, t.to(x.dtype).expand(x.shape[0]).to(x.device), self.cond)
        return clip_x0(pred, *self.clip) if self.clip is not None else pred

    def __iter__(self) -> Iterator[tuple[int, Tensor, Tensor, Prediction]]:
        for i in range(self.n):
            t, s = self.grid[i], self.grid[i + 1]
            pred = self.denoise(self.x, t)
            if self.callback is not None:
                self.callback(i, t, self.x, pred)
            if s == 0:
                self.x = pred.x0  # the final denoising step: x_0 = E[x_0 | x_t]
                return
            yield i, t, s, pred


def scalar(v: Tensor, like: Tensor) -> Tensor:
    """A float64 scalar coefficient in the dtype and on the device of `like`."""
    return v.to(like.dtype).to(like.device)
