"""Ancestral sampling (Algorithm 2) on any decreasing time grid."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from difflab.prediction import Condition, Denoiser, Prediction, clip_x0
from difflab.reverse import VARIANCES, check_variance, reverse_logvar, reverse_mean, step_coefficients
from difflab.samplers.noise import NoiseSource
from difflab.schedules.base import Schedule
from difflab.schedules.grids import check_grid

StepCallback = Callable[[int, Tensor, Tensor, Prediction], None]  # (step, t, x_t, prediction)
__all__ = ["sample_ancestral", "VARIANCES", "StepCallback"]


@torch.no_grad()
def sample_ancestral(
    denoiser: Denoiser,
    x_T: Tensor,
    schedule: Schedule,
    grid: Tensor,
    *,
    noise: NoiseSource,
    cond: Condition = None,
    variance: str = "posterior",
    clip: Optional[tuple[float, float]] = None,
    callback: Optional[StepCallback] = None,
) -> Tensor:
    """x_s ~ p_theta(x_s | x_t) for consecutive grid times t > s, ending at the grid's last time.

    On the full grid (t = T..1) this is exactly Algorithm 2: mu = mu_q(x_t, x0_hat, t) and sigma_t^2 = posterior
    variance (or beta_t with variance='beta', or the model's own with 'learned'); z = 0 on the last step (line 3).
    """
    check_variance(variance)
    grid = check_grid(grid)
    x = x_T
    n = len(grid) - 1
    for i in range(n):
        t, s = grid[i], grid[i + 1]
        pred = denoiser(x, t.to(x.dtype).expand(x.shape[0]).to(x.device), cond)
        if clip is not None:
            pred = clip_x0(pred, *clip)
        if callback is not None:
            callback(i, t, x, pred)
        step = step_coefficients(schedule, t, s)
        mean = reverse_mean(step, pred)
        if i < n - 1:  # Algorithm 2, line 3: z = 0 on the final step
            x = mean + torch.exp(0.5 * reverse_logvar(step, pred, variance)) * noise.randn_like(x)
        else:
            x = mean
    return x
