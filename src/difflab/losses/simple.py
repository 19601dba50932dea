"""Algorithm 1: the simple denoising loss, for each parameterization."""
from __future__ import annotations

import torch
from torch import Tensor

from difflab.prediction import Condition, Denoiser, Prediction, scales
from difflab.schedules.base import Schedule


def sample_steps(batch: int, T: int, generator: torch.Generator | None = None) -> Tensor:
    """t ~ Uniform({1, ..., T}) (Algorithm 1, line 3), as integers."""
    return torch.randint(1, T + 1, (batch,), generator=generator)


def simple_weight(parameterization: str, sigma: Tensor) -> Tensor | float:
    """Per-sample weight of the simple loss: 1, except sigma^2 for the score (so sigma^2 |s - s*|^2 = |eps - eps*|^2 scale)."""
    return sigma**2 if parameterization == "score" else 1.0


def simple_loss(
    denoiser: Denoiser, schedule: Schedule, x0: Tensor, t: Tensor, eps: Tensor,
    parameterization: str = "eps", cond: Condition = None,
) -> Tensor:
    """Per-sample loss |target - target_theta|^2 averaged over dimensions, with x_t = alpha x0 + sigma eps.

    For eps this is Algorithm 1, line 5: |eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t)|^2.
    """
    alpha, sigma = scales(schedule, t, x0)
    x_t = alpha * x0 + sigma * eps  # diffusion kernel q(x_t | x_0)
    return simple_error(denoiser(x_t, t, cond), Prediction(x_t, alpha, sigma, x0, eps), parameterization)


def simple_error(pred: Prediction, truth: Prediction, parameterization: str) -> Tensor:
    """(B,) weighted squared error of a prediction against the truth (x0, eps), averaged over dimensions."""
    err = (pred.target(parameterization) - truth.target(parameterization)) ** 2
    return (err * simple_weight(parameterization, truth.sigma)).flatten(1).mean(1)
