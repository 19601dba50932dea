"""Ancestral sampling (Algorithm 2) on any decreasing time grid."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from difflab.errors import UserError
from difflab.prediction import Condition, Denoiser, Prediction, clip_x0
from difflab.samplers.noise import NoiseSource
from difflab.schedules.base import Schedule
from difflab.schedules.grids import check_grid

StepCallback = Callable[[int, Tensor, Tensor, Prediction], None]  # (step, t, x_t, prediction)
VARIANCES = ("posterior", "beta")


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
    """x_{s} ~ p_theta(x_s | x_t) for consecutive grid times t > s, ending at the grid's last time.

    Between grid times the forward step has alpha_{t|s} = alpha_bar_t / alpha_bar_s, so on the full grid
    (t = T..1) this is exactly Algorithm 2: mu = mu_q(x_t, x0_hat, t) and sigma_t^2 = posterior variance
    (or beta_t with variance='beta'); z = 0 on the last step (Algorithm 2, line 3).
    """
    if variance not in VARIANCES:
        raise UserError(f"variance must be one of {VARIANCES}, got {variance!r}")
    grid = check_grid(grid)
    x = x_T
    n = len(grid) - 1
    for i in range(n):
        t, s = grid[i], grid[i + 1]
        pred = denoiser(x, t.to(x.dtype).expand(x.shape[0]), cond)
        if clip is not None:
            pred = clip_x0(pred, *clip)
        if callback is not None:
            callback(i, t, x, pred)
        ab_t, ab_s = schedule.alpha_bar(t), schedule.alpha_bar(s)  # float64 scalars
        a_step = ab_t / ab_s  # alpha_t of the step t -> s
        beta = 1 - a_step
        c_xt = a_step.sqrt() * (1 - ab_s) / (1 - ab_t)  # mu_q coefficient of x_t (seed)
        c_x0 = ab_s.sqrt() * beta / (1 - ab_t)  # mu_q coefficient of x_0 (seed)
        mean = c_xt.to(x.dtype) * x + c_x0.to(x.dtype) * pred.x0
        var = beta * (1 - ab_s) / (1 - ab_t) if variance == "posterior" else beta
        if i < n - 1:  # Algorithm 2, line 3: z = 0 on the final step
            x = mean + var.sqrt().to(x.dtype) * noise.randn_like(x)
        else:
            x = mean
    return x
