"""2-D toy point sets (two moons, swiss roll, Gaussian mixture) and an analytic Gaussian mixture.

For toy data ImageData.x is (N, D) points rather than (N, C, H, W) images; all sets roughly fill [-3, 3]^2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from difflab.data.dataset import ImageData
from difflab.errors import UserError


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """sum_k w_k N(mu_k, Cov_k) in float64, with exact sampling, log-density and score."""

    weights: Tensor  # (K,), normalised to sum to 1
    means: Tensor  # (K, D)
    covs: Tensor  # (K, D, D), symmetric positive definite
    _chol: Tensor = field(init=False, repr=False)  # (K, D, D) lower Cholesky factors of covs
    _prec: Tensor = field(init=False, repr=False)  # (K, D, D) inverse covariances

    def __post_init__(self) -> None:
        """Cast to float64, normalise weights, check shapes and positive definiteness."""
        w, mu, cov = (torch.as_tensor(t, dtype=torch.float64) for t in (self.weights, self.means, self.covs))
        if w.ndim != 1 or mu.ndim != 2 or cov.ndim != 3 or not (len(w) == len(mu) == len(cov)) or cov.shape[1:] != (mu.shape[1],) * 2:
            raise UserError(f"GaussianMixture needs weights (K,), means (K, D), covs (K, D, D); got {tuple(w.shape)}, {tuple(mu.shape)}, {tuple(cov.shape)}")
        if len(w) == 0 or not bool((w > 0).all()) or not bool(torch.isfinite(w).all()):
            raise UserError("GaussianMixture weights must be positive and finite, with at least one component")
        chol, info = torch.linalg.cholesky_ex(0.5 * (cov + cov.transpose(-1, -2)))
        if bool((info != 0).any()):
            raise UserError("GaussianMixture covariances must be symmetric positive definite (a diffused mixture needs sigma > 0 or alpha != 0)")
        for name, value in (("weights", w / w.sum()), ("means", mu), ("covs", cov), ("_chol", chol), ("_prec", torch.cholesky_inverse(chol))):
            object.__setattr__(self, name, value)

    @property
    def dim(self) -> int:
        """Dimension D of a point."""
        return int(self.means.shape[1])

    def mean(self) -> Tensor:
        """Mixture mean (D,): sum_k w_k mu_k."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Mixture covariance (D, D): sum_k w_k (Cov_k + mu_k mu_k^T) - m m^T."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs + self.means[:, :, None] * self.means[:, None, :])
        return second - torch.outer(m, m)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw n points: (x (n, D) float64, component (n,) int64)."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(n, self.dim, 1, dtype=torch.float64, generator=generator)  # (n, D, 1)
        return self.means[comp] + (self._chol[comp] @ eps).squeeze(-1), comp

    def _component_log_probs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(log w_k + log N(x; mu_k, Cov_k) (..., K), x - mu_k (..., K, D)) for x (..., D)."""
        diff = x.to(torch.float64)[..., None, :] - self.means  # (..., K, D)
        z = _whiten(self._chol, diff)  # (..., K, D)
        log_det = 2.0 * torch.log(torch.diagonal(self._chol, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        log_norm = -0.5 * (self.dim * math.log(2.0 * math.pi) + log_det + z.square().sum(-1))
        return torch.log(self.weights) + log_norm, diff

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density log p(x) (...,) in float64 for x (..., D); differentiable."""
        return torch.logsumexp(self._component_log_probs(x)[0], dim=-1)

    def score(self, x: Tensor) -> Tensor:
        """Analytic grad_x log p(x) (..., D) = sum_k r_k(x) * -Cov_k^{-1} (x - mu_k)."""
        log_joint, diff = self._component_log_probs(x)
        resp = torch.softmax(log_joint, dim=-1)  # (..., K) posterior over components
        return -torch.einsum("...k,kij,...kj->...i", resp, self._prec, diff)

    def posterior_mean(self, x_t: Tensor, alpha: float, sigma: float) -> Tensor:
        """E[x_0 | x_t] (B, D) for x_t = alpha x_0 + sigma eps, x_0 ~ this mixture (one noise level for the batch).

        Component k's posterior mean is mu_k + alpha Cov_k C_k^{-1} (x_t - alpha mu_k), C_k = alpha^2 Cov_k + sigma^2 I,
        weighted by the responsibilities r_k(x_t) of the diffused mixture.
        """
        x = x_t.to(torch.float64)
        eye = torch.eye(self.dim, dtype=torch.float64)
        chol = torch.linalg.cholesky(alpha**2 * self.covs + sigma**2 * eye)  # (K, D, D)
        diff = x[:, None, :] - alpha * self.means  # (B, K, D)
        z = _whiten(chol, diff)  # (B, K, D): L_k^{-1} (x - a mu_k)
        sol = _whiten(chol, z, transpose=True)  # (B, K, D): C_k^{-1} (x - a mu_k)
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        resp = torch.softmax(torch.log(self.weights) - 0.5 * (z.square().sum(-1) + log_det), dim=1)  # (B, K)
        mean_k = self.means + alpha * torch.einsum("kde,bke->bkd", self.covs, sol)  # (B, K, D)
        return (resp[..., None] * mean_k).sum(1)

    def diffused(self, alpha: float, sigma: float) -> GaussianMixture:
        """Marginal of x_t = alpha x0 + sigma eps: means * alpha, covs * alpha^2 + sigma^2 I."""
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(self.weights, self.means * alpha, self.covs * alpha**2 + sigma**2 * eye)


def _whiten(chol: Tensor, v: Tensor, transpose: bool = False) -> Tensor:
    """L_k^{-1} v_k (or L_k^{-T} v_k) for chol (K, D, D) and v (..., K, D), one triangular solve per component."""
    lead = v.shape[:-2]
    K, D = v.shape[-2:]
    rhs = v.reshape(-1, K, D).permute(1, 2, 0)  # (K, D, M)
    a = chol.transpose(-1, -2) if transpose else chol
    out = torch.linalg.solve_triangular(a, rhs, upper=transpose)  # (K, D, M)
    return out.permute(2, 0, 1).reshape(*lead, K, D)


def eight_mode_ring(radius: float = 2.0, std: float = 0.2) -> GaussianMixture:
    """The default 2-D mixture: 8 isotropic modes on a circle, weights 1..8 (normalised), data within ~[-3, 3]^2."""
    angles = torch.arange(8, dtype=torch.float64) * (2.0 * math.pi / 8)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (8, 2)
    covs = (std**2) * torch.eye(2, dtype=torch.float64).expand(8, 2, 2)  # (8, 2, 2)
    return GaussianMixture(torch.arange(1, 9, dtype=torch.float64), means, covs)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def two_moons(n: int, seed: int = 0, noise: float = 0.1) -> ImageData:
    """Two interleaved half circles, x (n, 2) in ~[-3, 3] x [-1.5, 1.5], labels = moon index (2 classes)."""
    g = _generator(seed)
    moon = torch.randint(0, 2, (n,), generator=g)  # (n,)
    t = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    upper = torch.stack([torch.cos(t), torch.sin(t)], dim=1)  # (n, 2)
    lower = torch.stack([1.0 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
    pts = torch.where(moon[:, None] == 0, upper, lower)
    pts = 2.0 * (pts - torch.tensor([0.5, 0.25], dtype=torch.float64))  # centre and scale to ~[-3, 3]
    pts = pts + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return ImageData(x=pts.to(torch.float32), labels=moon.to(torch.int64), num_classes=2)


def swiss_roll(n: int, seed: int = 0, noise: float = 0.1) -> ImageData:
    """A 2-D spiral t (cos t, sin t) for t in [1.5 pi, 4.5 pi], scaled to ~[-3, 3]^2; unlabelled."""
    g = _generator(seed)
    t = 1.5 * math.pi * (1.0 + 2.0 * torch.rand(n, generator=g, dtype=torch.float64))
    pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 5.0  # (n, 2)
    pts = pts + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return ImageData(x=pts.to(torch.float32))


def gaussian_mixture(n: int, seed: int = 0, mixture: GaussianMixture | None = None) -> ImageData:
    """Samples of a mixture (default eight_mode_ring) as x (n, D), labels = component index."""
    gm = mixture if mixture is not None else eight_mode_ring()
    x, comp = gm.sample(n, _generator(seed))
    return ImageData(x=x.to(torch.float32), labels=comp, num_classes=len(gm.weights))
