"""Gaussian building blocks shared by the diffusion ELBO and the VAEs: KL, and decoder log-likelihoods."""
from __future__ import annotations

import math

import torch
from torch import Tensor

LOG2PI = math.log(2 * math.pi)


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """Elementwise KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) = 0.5 (lv2 - lv1 + (e^lv1 + (m1-m2)^2) / e^lv2 - 1)."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def gaussian_log_prob(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log N(x; mean, e^logvar) for continuous data."""
    return -0.5 * (LOG2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))


def _log_ndtr(z: Tensor) -> Tensor:
    return torch.special.log_ndtr(z)


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, logvar: Tensor, bins: int = 256) -> Tensor:
    """Elementwise log P(x) for x on the 8-bit grid of [-1, 1]: Gaussian mass of the pixel's bin of width 2/(bins-1).

    The lowest and highest bins extend to -inf and +inf, so the probabilities of all bins sum to 1.
    """
    x, mean, logvar = x.double(), mean.double(), logvar.double()  # tails need float64
    half = 1.0 / (bins - 1)
    inv_std = torch.exp(-0.5 * logvar)
    upper, lower = (x - mean + half) * inv_std, (x - mean - half) * inv_std
    log_cdf_upper = _log_ndtr(upper)  # log Phi(upper): the mass below the bin's top
    log_sf_lower = _log_ndtr(-lower)  # log (1 - Phi(lower)): the mass above the bin's bottom
    # mass of the bin = Phi(upper) - Phi(lower), computed stably on the side away from the tail
    mid = torch.where(lower > 0, _log_diff(_log_ndtr(-lower), _log_ndtr(-upper)),
                      _log_diff(log_cdf_upper, _log_ndtr(lower)))
    return torch.where(x < -1 + half / 2, log_cdf_upper, torch.where(x > 1 - half / 2, log_sf_lower, mid))


def _log_diff(log_a: Tensor, log_b: Tensor) -> Tensor:
    """log(e^a - e^b) for a > b; finite (and with finite gradients) everywhere, also where torch.where discards it."""
    return log_a + torch.log(-torch.expm1((log_b - log_a).clamp(max=-1e-15)))


def on_8bit_grid(x: Tensor, bins: int = 256, tol: float = 1e-4) -> bool:
    """True when every value is in [-1, 1] and sits on the grid k * 2/(bins-1) - 1."""
    if x.numel() == 0 or x.min() < -1 - tol or x.max() > 1 + tol:
        return False
    k = (x + 1) * (bins - 1) / 2
    return bool(((k - k.round()).abs() < tol * (bins - 1)).all())
