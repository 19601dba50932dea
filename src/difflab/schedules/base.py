"""The continuous interface every schedule offers: x_t = alpha(t) x_0 + sigma(t) eps, t in [0, 1]."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class Schedule(ABC):
    """A noise schedule seen in continuous time; discrete steps are t = i / T."""

    @abstractmethod
    def log_alpha_bar(self, t: Tensor) -> Tensor:
        """log alpha_bar(t) = log alpha(t)^2, decreasing from 0 at t = 0 (float64)."""

    @abstractmethod
    def t_of_log_alpha_bar(self, log_ab: Tensor) -> Tensor:
        """Inverse of log_alpha_bar (float64)."""

    def alpha_bar(self, t: Tensor) -> Tensor:
        """alpha_bar(t): squared signal scale of the diffusion kernel q(x_t | x_0)."""
        return self.log_alpha_bar(t).exp()

    def alpha(self, t: Tensor) -> Tensor:
        """Signal scale sqrt(alpha_bar(t))."""
        return (0.5 * self.log_alpha_bar(t)).exp()

    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale sqrt(1 - alpha_bar(t)) (variance preserving)."""
        return (-torch.expm1(self.log_alpha_bar(t))).sqrt()

    def log_snr(self, t: Tensor) -> Tensor:
        """lambda(t) = log(alpha^2 / sigma^2), decreasing in t."""
        lab = self.log_alpha_bar(t)
        return lab - torch.log(-torch.expm1(lab))

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of log_snr: alpha_bar = sigmoid(lambda), so log alpha_bar = -softplus(-lambda)."""
        return self.t_of_log_alpha_bar(-torch.nn.functional.softplus(-lam.double()))

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Diffusion kernel: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (seed: 'Diffusion kernel')."""
        from difflab.utils import append_dims

        a = append_dims(self.alpha(t), x0.ndim).to(x0.dtype)
        s = append_dims(self.sigma(t), x0.ndim).to(x0.dtype)
        return a * x0 + s * eps
