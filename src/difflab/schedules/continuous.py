"""Continuous-time schedules (Song et al. 2021; Karras et al. 2022), each a forward SDE with data at t = 0.

  VP      dx = -beta(t)/2 x dt + sqrt(beta(t)) dw,            beta(t) = beta_min + t (beta_max - beta_min)
  sub-VP  dx = -beta(t)/2 x dt + sqrt(beta(t)(1 - e^{-2B(t)})) dw,  B(t) = int_0^t beta
  VE      dx = sqrt(d sigma^2 / dt) dw,                        sigma^2(t) = sigma_min^2 ((sigma_max/sigma_min)^{2t} - 1)
  EDM     x_t = x_0 + sigma(t) eps,                             sigma(t) = sigma_max t
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.schedules.base import Schedule, VPSchedule


def _t64(t: Tensor) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64)


class _IntegratedBeta:
    """B(t) = int_0^t beta(u) du = beta_min t + (beta_max - beta_min) t^2 / 2 for a linear beta(t), and its inverse."""

    def __init__(self, beta_min: float, beta_max: float):
        self.beta_min, self.beta_max = beta_min, beta_max

    def B(self, t: Tensor) -> Tensor:
        t = _t64(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def t_of_B(self, B: Tensor) -> Tensor:
        """The positive root of (beta_max - beta_min)/2 t^2 + beta_min t - B = 0, in a cancellation-free form."""
        B = _t64(B).clamp_min(0)
        return 2 * B / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * (self.beta_max - self.beta_min) * B))


class VPLinear(VPSchedule):
    """The VP SDE of the lecture ('Continuous-time diffusion models'): log alpha_bar(t) = -B(t)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3):
        self.beta, self.t_min = _IntegratedBeta(beta_min, beta_max), t_min

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        return -self.beta.B(t)

    def t_of_log_alpha_bar(self, log_ab: Tensor) -> Tensor:
        return self.beta.t_of_B(-_t64(log_ab))


class SubVP(Schedule):
    """sub-VP SDE: alpha = e^{-B/2}, sigma = 1 - e^{-B}; its variance never exceeds the VP one."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3):
        self.beta, self.t_min = _IntegratedBeta(beta_min, beta_max), t_min

    def log_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta.B(t)

    def log_sigma(self, t: Tensor) -> Tensor:
        return torch.log(-torch.expm1(-self.beta.B(t)))

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        # sigma / alpha = r = (1 - u^2) / u with u = e^{-B/2}: u^2 + r u - 1 = 0, u = 2 / (r + sqrt(r^2 + 4))
        r = torch.exp(-0.5 * _t64(lam))
        u = 2 / (r + torch.sqrt(r**2 + 4))
        return self.beta.t_of_B(-2 * torch.log(u))


class VE(Schedule):
    """VE SDE started from the data at t = 0: alpha = 1, sigma^2 = sigma_min^2 (r^{2t} - 1), r = sigma_max / sigma_min."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 0.0):
        self.sigma_min, self.log_r = sigma_min, math.log(sigma_max / sigma_min)
        self.t_min = t_min or math.log(2) / (2 * self.log_r)  # default: where sigma(t) = sigma_min

    def log_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_t64(t))

    def log_sigma(self, t: Tensor) -> Tensor:
        return math.log(self.sigma_min) + 0.5 * torch.log(torch.expm1(2 * self.log_r * _t64(t)))

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        return torch.log1p(torch.exp(-_t64(lam)) / self.sigma_min**2) / (2 * self.log_r)


class EDM(Schedule):
    """Karras et al. (2022): alpha = 1, sigma(t) = sigma_max t; samplers step in sigma, usually on a Karras grid."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, t_min: float = 0.0):
        self.sigma_max = sigma_max
        self.t_min = t_min or sigma_min / sigma_max

    def log_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_t64(t))

    def log_sigma(self, t: Tensor) -> Tensor:
        return torch.log(self.sigma_max * _t64(t))

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        return torch.exp(-0.5 * _t64(lam)) / self.sigma_max
