"""Discrete DDPM schedules (beta tables) and their continuous view; all tables in float64."""
from __future__ import annotations

import math
import torch
from torch import Tensor

from difflab.schedules.base import VPSchedule


def linear_betas(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> Tensor:
    """DDPM's linear schedule beta_t = 1 - alpha_t, t = 1..T (Ho et al. 2020)."""
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


def scaled_linear_betas(T: int, beta_1: float = 0.00085, beta_T: float = 0.012) -> Tensor:
    """Latent diffusion's schedule: sqrt(beta_t) linear from sqrt(beta_1) to sqrt(beta_T) (diffusers' scaled_linear)."""
    return torch.linspace(beta_1**0.5, beta_T**0.5, T, dtype=torch.float64) ** 2


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) * pi/2)."""
    i = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((i / T + s) / (1 + s) * math.pi / 2) ** 2
    ab = f / f[0]
    return (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)


class DiscreteSchedule(VPSchedule):
    """alpha_t = 1 - beta_t, alpha_bar_t = prod_{i<=t} alpha_i, indexed t = 0..T (alpha_bar_0 = 1).

    In continuous time, step i sits at t = i / T and log alpha_bar is interpolated linearly between steps,
    so samplers on any grid see the same process; on the grid it is exactly the table.
    """

    def __init__(self, betas: Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        self.T = betas.numel()
        self.betas = torch.cat([betas.new_zeros(1), betas])  # (T+1,), beta_0 = 0 as padding
        self.alphas = 1 - self.betas  # alpha_t
        self.alpha_bars = torch.cumprod(self.alphas, 0)  # alpha_bar_t, alpha_bar_0 = 1
        self._log_ab = torch.log(self.alpha_bars)  # (T+1,), strictly decreasing
        self.t_min = 1 / self.T  # the first step: networks are trained on t = 1/T .. 1

    @property
    def steps(self) -> int:
        """T: the table's integer steps t = i / T, i = 0..T."""
        return self.T

    # -- the lecture's discrete quantities, by integer step t in 1..T -------------------------------------
    def posterior_variance(self, t: Tensor) -> Tensor:
        """sigma_t^2 = (1 - alpha_t)(1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) (seed: tractable posterior)."""
        t = torch.as_tensor(t)
        return self.betas[t] * (1 - self.alpha_bars[t - 1]) / (1 - self.alpha_bars[t])

    def posterior_mean_coefs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Coefficients (c_xt, c_x0) of mu_q(x_t, x_0, t) = c_xt x_t + c_x0 x_0 (seed: tractable posterior)."""
        t = torch.as_tensor(t)
        ab, ab_prev, a = self.alpha_bars[t], self.alpha_bars[t - 1], self.alphas[t]
        return a.sqrt() * (1 - ab_prev) / (1 - ab), ab_prev.sqrt() * (1 - a) / (1 - ab)

    def time(self, i: Tensor) -> Tensor:
        """Continuous time of integer step i: t = i / T."""
        return torch.as_tensor(i, dtype=torch.float64) / self.T

    # -- continuous view -----------------------------------------------------------------------------
    def log_alpha_bar(self, t: Tensor) -> Tensor:
        """log alpha_bar linear in t on each [(i-1)/T, i/T], exactly the table at t = i / T.

        At a step t = i / T the interval below is used (weight 1 on its upper end), so autograd's d/dt there, hence
        f(t) and g(t)^2, is the slope of ((i-1)/T, i/T): the interval a reverse step from t = i / T goes down into.
        """
        t = torch.as_tensor(t)
        u = t.to("cpu", torch.float64).clamp(0, 1) * self.T  # tables live on the CPU; differentiable in t
        # i / T * T can land an ulp above i: within 1e-9 of a step counts as on it
        lo = (u - 1e-9).ceil().sub(1).clamp(0, self.T - 1).long()
        w = u - lo
        return torch.lerp(self._log_ab[lo], self._log_ab[lo + 1], w).to(t.device)

    def t_of_log_alpha_bar(self, log_ab: Tensor) -> Tensor:
        return self._t_of_log_ab(torch.as_tensor(log_ab).detach().to("cpu", torch.float64)).to(torch.as_tensor(log_ab).device)

    def _t_of_log_ab(self, v: Tensor) -> Tensor:
        v = v.clamp(self._log_ab[-1], 0)
        desc = -self._log_ab  # increasing
        hi = torch.searchsorted(desc, -v).clamp(1, self.T)
        lo = hi - 1
        w = (-v - desc[lo]) / (desc[hi] - desc[lo])
        return (lo + w) / self.T
