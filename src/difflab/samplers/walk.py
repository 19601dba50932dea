"""The loop every sampler shares: walk a decreasing grid, ask the denoiser at each time, clip, report."""
from __future__ import annotations

from typing import Callable, Iterator, Optional

from torch import Tensor

from difflab.prediction import Condition, Denoiser, Prediction, clip_x0
from difflab.schedules.grids import check_grid

StepCallback = Callable[[int, Tensor, Tensor, Prediction], None]  # (step, t, x_t, prediction)


class GridWalk:
    """Iterate (i, t, s, prediction) over consecutive grid times t > s; the sampler sets `.x` after each step."""

    def __init__(self, denoiser: Denoiser, x_T: Tensor, grid: Tensor, cond: Condition = None,
                 clip: Optional[tuple[float, float]] = None, callback: Optional[StepCallback] = None):
        self.denoiser, self.x, self.grid = denoiser, x_T, check_grid(grid)
        self.cond, self.clip, self.callback = cond, clip, callback
        self.n = len(self.grid) - 1  # network evaluations

    def __iter__(self) -> Iterator[tuple[int, Tensor, Tensor, Prediction]]:
        for i in range(self.n):
            t, s = self.grid[i], self.grid[i + 1]
            x = self.x
            pred = self.denoiser(x, t.to(x.dtype).expand(x.shape[0]).to(x.device), self.cond)
            if self.clip is not None:
                pred = clip_x0(pred, *self.clip)
            if self.callback is not None:
                self.callback(i, t, x, pred)
            yield i, t, s, pred
