"""Time grids for samplers: decreasing times from high noise to t = 0."""
from __future__ import annotations

import torch
from torch import Tensor

from difflab.errors import UserError


def discrete_grid(T: int, steps: int | None = None) -> Tensor:
    """Times i / T for i = T, ..., 1, 0 (Algorithm 2's loop); with steps < T, evenly strided, still from T to 0."""
    steps = T if steps is None else steps
    if not 1 <= steps <= T:
        raise UserError(f"sampling steps must be in 1..{T}, got {steps}")
    i = torch.linspace(T, 0, steps + 1, dtype=torch.float64).round()
    return i / T


def check_grid(grid: Tensor) -> Tensor:
    """A grid must be 1-D, strictly decreasing, and end at t = 0."""
    grid = torch.as_tensor(grid, dtype=torch.float64)
    if grid.ndim != 1 or grid.numel() < 2:
        raise UserError("a time grid needs at least two times, from high noise down to 0")
    if not bool((grid[1:] < grid[:-1]).all()):
        raise UserError("a time grid must run from high noise to low (strictly decreasing times)")
    return grid
