"""What a denoiser says about x_0 given x_t, in every parameterization, tied by Tweedie's formula.

With x_t = alpha x_0 + sigma eps (alpha = sqrt(alpha_bar_t), sigma = sqrt(1 - alpha_bar_t)):
  x0    = (x_t - sigma eps) / alpha            (seed, Interpretation 2: reparameterisation)
  score = -eps / sigma                          (seed, Interpretation 3: Tweedie, grad log q(x_t | x_0))
  v     = alpha eps - sigma x0                  (velocity, Salimans & Ho 2022)
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch
from torch import Tensor

from difflab.condition import Condition
from difflab.schedules.base import Schedule
from difflab.utils import bcast


@dataclass(frozen=True)
class Prediction:
    """A denoiser's answer at (x_t, t); alpha and sigma broadcast against x_t."""

    x_t: Tensor  # (B, ...)
    alpha: Tensor  # (B, 1, ...) signal scale
    sigma: Tensor  # (B, 1, ...) noise scale
    x0: Tensor  # (B, ...) E[x_0 | x_t]
    eps: Tensor  # (B, ...) E[eps | x_t]
    var_frac: Optional[Tensor] = None  # (B, ...) in [0, 1]: learned reverse variance, between sigma_t^2 and beta_t
    out: Optional[Tensor] = None  # (B, ...) the network's raw output F, when a network made this prediction

    @property
    def score(self) -> Tensor:
        """grad_x log q(x_t) = -eps / sigma (Tweedie)."""
        return -self.eps / self.sigma

    @property
    def v(self) -> Tensor:
        """v = alpha eps - sigma x0."""
        return self.alpha * self.eps - self.sigma * self.x0

    @classmethod
    def from_eps(cls, x_t: Tensor, alpha: Tensor, sigma: Tensor, eps: Tensor) -> "Prediction":
        return cls(x_t, alpha, sigma, (x_t - sigma * eps) / alpha, eps)

    @classmethod
    def from_x0(cls, x_t: Tensor, alpha: Tensor, sigma: Tensor, x0: Tensor) -> "Prediction":
        return cls(x_t, alpha, sigma, x0, (x_t - alpha * x0) / sigma)

    @classmethod
    def from_score(cls, x_t: Tensor, alpha: Tensor, sigma: Tensor, score: Tensor) -> "Prediction":
        return cls.from_eps(x_t, alpha, sigma, -sigma * score)

    @classmethod
    def from_v(cls, x_t: Tensor, alpha: Tensor, sigma: Tensor, v: Tensor) -> "Prediction":
        # alpha^2 + sigma^2 = 1: x0 = alpha x_t - sigma v, eps = sigma x_t + alpha v
        norm = alpha**2 + sigma**2
        return cls(x_t, alpha, sigma, (alpha * x_t - sigma * v) / norm, (sigma * x_t + alpha * v) / norm)

    def target(self, parameterization: str) -> Tensor:
        """This prediction viewed in a named parameterization (x0, eps, score or v)."""
        return getattr(self, parameterization)


FROM = {"eps": Prediction.from_eps, "x0": Prediction.from_x0, "score": Prediction.from_score, "v": Prediction.from_v}
VIEWS = tuple(FROM)  # the x-space views a Prediction answers

Denoiser = Callable[[Tensor, Tensor, Optional[Condition]], Prediction]  # (x_t, t float64 (B,), cond) -> Prediction


def scales(schedule: Schedule, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """alpha(t), sigma(t) shaped (B, 1, ...) to broadcast against `like`, in its dtype."""
    t = torch.as_tensor(t, dtype=torch.float64).expand(like.shape[0])
    return bcast(schedule.alpha(t), like), bcast(schedule.sigma(t), like)


class ScoreFnDenoiser:
    """Adapter: an exact score function score_fn(x_t, alpha, sigma) (e.g. of a Gaussian mixture) as a Denoiser."""

    def __init__(self, score_fn: Callable[[Tensor, Tensor, Tensor], Tensor], schedule: Schedule):
        self.score_fn, self.schedule = score_fn, schedule

    def __call__(self, x_t: Tensor, t: Tensor, cond: Optional[Condition] = None) -> Prediction:
        alpha, sigma = scales(self.schedule, t, x_t)
        return Prediction.from_score(x_t, alpha, sigma, self.score_fn(x_t, alpha, sigma))


def clip_x0(pred: Prediction, lo: float = -1.0, hi: float = 1.0) -> Prediction:
    """Clamp x0 to the data range and re-derive eps, keeping the prediction consistent."""
    clipped = Prediction.from_x0(pred.x_t, pred.alpha, pred.sigma, pred.x0.clamp(lo, hi))
    return replace(clipped, var_frac=pred.var_frac)


class Clip:
    """Denoiser transform: x0_hat clamped to the data range [lo, hi] (eps re-derived), as DDPM's sampler does."""

    def __init__(self, denoiser: Denoiser, lo: float = -1.0, hi: float = 1.0):
        self.denoiser, self.lo, self.hi = denoiser, lo, hi

    def __call__(self, x_t: Tensor, t: Tensor, cond: Optional[Condition] = None) -> Prediction:
        return clip_x0(self.denoiser(x_t, t, cond), self.lo, self.hi)
