"""The continuous interface every schedule offers: x_t = alpha(t) x_0 + sigma(t) eps, t in [0, 1], data at t = 0.

A schedule is also a forward SDE dx = f(t) x dt + g(t) dw with these marginals (Song et al. 2021):
  f(t) = d log alpha / dt,   g(t)^2 = d sigma^2 / dt - 2 f(t) sigma^2 = -sigma^2 d lambda / dt,
where lambda(t) = log(alpha^2 / sigma^2) is the log signal-to-noise ratio. Derivatives come from autograd in float64,
so a new schedule is only its alpha, sigma and the inverse of lambda.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import Tensor


def _derivative(fn: Callable[[Tensor], Tensor], t: Tensor) -> Tensor:
    """d fn / dt elementwise (float64), by autograd; works inside torch.no_grad."""
    t = torch.as_tensor(t, dtype=torch.float64)
    with torch.enable_grad():
        tt = t.detach().clone().requires_grad_(True)
        y = fn(tt)
        if not y.requires_grad:  # constant in t (alpha = 1 of VE / EDM)
            return torch.zeros_like(tt.detach())
        (d,) = torch.autograd.grad(y.sum(), tt, allow_unused=True)
    return torch.zeros_like(tt.detach()) if d is None else d


class Schedule(ABC):
    """A noise schedule (and forward SDE) in continuous time; discrete steps are t = i / T."""

    t_min: float = 1e-3  # the smallest time samplers evaluate and training draws (the lecture's eps in U[eps, 1])

    @property
    def steps(self) -> int | None:
        """Number T of integer steps t = i / T the schedule is defined on (a DDPM beta table), None in continuous time.

        The one test for "is this a discrete table": the 'discrete' grid, Algorithm 2 and the ELBO need T.
        """
        return None

    @abstractmethod
    def log_alpha(self, t: Tensor) -> Tensor:
        """log alpha(t) (float64), 0 at t = 0 for the schedules here."""

    @abstractmethod
    def log_sigma(self, t: Tensor) -> Tensor:
        """log sigma(t) (float64), -inf at t = 0."""

    @abstractmethod
    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of log_snr (float64)."""

    def alpha(self, t: Tensor) -> Tensor:
        """Signal scale alpha(t)."""
        return self.log_alpha(t).exp()

    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale sigma(t)."""
        return self.log_sigma(t).exp()

    def log_snr(self, t: Tensor) -> Tensor:
        """lambda(t) = log(alpha^2 / sigma^2), decreasing in t, +inf at t = 0."""
        return 2 * (self.log_alpha(t) - self.log_sigma(t))

    # -- the SDE view ---------------------------------------------------------------------------------
    def f(self, t: Tensor) -> Tensor:
        """Drift coefficient f(t) of dx = f(t) x dt + g(t) dw: d log alpha / dt (VP: -beta(t) / 2)."""
        return _derivative(self.log_alpha, t)

    def g2(self, t: Tensor) -> Tensor:
        """Squared diffusion g(t)^2 = -sigma^2 d lambda / dt (VP: beta(t))."""
        return -self.sigma(t) ** 2 * _derivative(self.log_snr, t)

    def prior_std(self) -> float:
        """Standard deviation of the prior p_1 = N(0, (alpha(1)^2 + sigma(1)^2) I): unit-variance data diffused to t = 1."""
        one = torch.ones((), dtype=torch.float64)
        return float((self.alpha(one) ** 2 + self.sigma(one) ** 2).sqrt())

    def prior_sample(self, z: Tensor) -> Tensor:
        """x_1 ~ p_1 from standard normal z: prior_std * z (exactly z for a VP schedule)."""
        return z * torch.tensor(self.prior_std(), dtype=z.dtype, device=z.device)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, prior_std^2 I) per sample, (B,) float64."""
        s = self.prior_std()
        x = x.double().flatten(1)
        return -0.5 * (x / s).square().sum(1) - x.shape[1] * (math.log(s) + 0.5 * math.log(2 * math.pi))

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Diffusion kernel: x_t = alpha(t) x_0 + sigma(t) eps (seed: 'Diffusion kernel'); t float64 (B,) or scalar."""
        from difflab.utils import bcast

        return bcast(self.alpha(t), x0) * x0 + bcast(self.sigma(t), x0) * eps


class VPSchedule(Schedule):
    """Variance preserving: alpha^2 + sigma^2 = 1, all given by log alpha_bar(t) = 2 log alpha(t)."""

    @abstractmethod
    def log_alpha_bar(self, t: Tensor) -> Tensor:
        """log alpha_bar(t) = log alpha(t)^2, decreasing from 0 at t = 0 (float64)."""

    @abstractmethod
    def t_of_log_alpha_bar(self, log_ab: Tensor) -> Tensor:
        """Inverse of log_alpha_bar (float64)."""

    def alpha_bar(self, t: Tensor) -> Tensor:
        """alpha_bar(t): squared signal scale of the diffusion kernel q(x_t | x_0)."""
        return self.log_alpha_bar(t).exp()

    def log_alpha(self, t: Tensor) -> Tensor:
        return 0.5 * self.log_alpha_bar(t)

    def log_sigma(self, t: Tensor) -> Tensor:
        """log sqrt(1 - alpha_bar(t))."""
        return 0.5 * torch.log(-torch.expm1(self.log_alpha_bar(t)))

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        """alpha_bar = sigmoid(lambda), so log alpha_bar = -softplus(-lambda)."""
        return self.t_of_log_alpha_bar(-torch.nn.functional.softplus(-torch.as_tensor(lam).double()))
