"""Algorithm 1: the simple denoising loss, on the preconditioned network's own output F."""
from __future__ import annotations

import torch
from torch import Tensor

from difflab.condition import Condition
from difflab.precond import Precond, sigma_tilde
from difflab.prediction import Prediction


def sample_steps(batch: int, T: int, generator: torch.Generator | None = None) -> Tensor:
    """t ~ Uniform({1, ..., T}) (Algorithm 1, line 3), as integers."""
    return torch.randint(1, T + 1, (batch,), generator=generator)


def output_error(precond: Precond, pred: Prediction, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    """(B,) |F - F*|^2 averaged over dimensions: for eps-prediction Algorithm 1's |eps - eps_theta|^2 exactly."""
    return (pred.out - precond.target(x0, eps, t)).square().flatten(1).mean(1)


def simple_loss(precond: Precond, x0: Tensor, t: Tensor, eps: Tensor, cond: Condition | None = None) -> Tensor:
    """(B,) Algorithm 1, line 5: w(sigma~) |F - F*|^2 at x_t = alpha x0 + sigma eps, t float64 (B,);
    w = 1, except sigma_vp^2 for the score, so every parameterization's loss has the eps loss's scale."""
    pred = precond(precond.schedule.q_sample(x0, t, eps), t, cond)  # at x_t ~ q(x_t | x_0)
    err = output_error(precond, pred, x0, eps, t)
    return precond.param.loss_weight(sigma_tilde(precond.schedule, t)).to(err) * err
