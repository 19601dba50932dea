"""Sample-quality metrics on feature vectors, all in float64: Fréchet distance (FID, Heusel et al. 2017), KID (the
unbiased MMD^2 with the cubic polynomial kernel, Bińkowski et al. 2018), improved precision / recall of the sample
manifold (Kynkäänniemi et al. 2019), and the sliced Wasserstein distance for low-dimensional data."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from difflab.errors import UserError


@dataclass(frozen=True)
class Stats:
    """Mean (D,) and covariance (D, D) of feature vectors, float64, and how many vectors they summarise."""

    mu: Tensor
    sigma: Tensor
    n: int

    @classmethod
    def of(cls, f: Tensor) -> "Stats":
        f = f.double()
        if len(f) < 2:
            raise UserError(f"feature statistics need at least 2 vectors, got {len(f)}")
        return cls(f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1]), len(f))


def frechet_distance(a: Stats, b: Stats) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)); the trace of the square root is the sum of the square roots
    of the eigenvalues of S_a^(1/2) S_b S_a^(1/2) (symmetric, so no complex parts from round-off)."""
    if a.mu.shape != b.mu.shape:
        raise UserError(f"feature dimensions differ: {a.mu.shape[0]} vs {b.mu.shape[0]}")
    w, v = torch.linalg.eigh(a.sigma)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T  # S_a^(1/2)
    middle = root_a @ b.sigma @ root_a
    tr_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return float((a.mu - b.mu).square().sum() + a.sigma.trace() + b.sigma.trace() - 2 * tr_root)


def kid(real: Tensor, fake: Tensor, *, subsets: int = 50, subset_size: int = 1000,
        generator: torch.Generator | None = None) -> tuple[float, float]:
    """KID: mean and standard deviation over random subsets of the unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3."""
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise UserError(f"KID needs at least 2 real and 2 generated feature vectors, got {len(real)} and {len(fake)}")
    real, fake, D = real.double(), fake.double(), real.shape[1]
    vals = []
    for _ in range(subsets):
        x = real[torch.randperm(len(real), generator=generator)[:m]]
        y = fake[torch.randperm(len(fake), generator=generator)[:m]]
        kxx, kyy, kxy = [(p @ q.T / D + 1) ** 3 for p, q in ((x, x), (y, y), (x, y))]
        off = 1 - torch.eye(m, dtype=torch.float64)
        vals.append(float((kxx * off).sum() / (m * (m - 1)) + (kyy * off).sum() / (m * (m - 1)) - 2 * kxy.mean()))
    t = torch.tensor(vals)
    return float(t.mean()), float(t.std()) if len(t) > 1 else 0.0


def _kth_radius(f: Tensor, k: int) -> Tensor:
    """Distance of each vector to its k-th nearest neighbour within the set (itself excluded)."""
    d = torch.cdist(f, f)
    return d.kthvalue(k + 1, dim=1).values  # the 1st smallest is the vector itself (distance 0)


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision (share of generated vectors inside the real manifold: some real vector's k-NN ball holds
    them) and recall (share of real vectors inside the generated manifold)."""
    if min(len(real), len(fake)) <= k:
        raise UserError(f"precision / recall with k = {k} need more than {k} real and generated vectors, got "
                        f"{len(real)} and {len(fake)}")
    real, fake = real.double(), fake.double()

    def covered(points: Tensor, support: Tensor) -> float:
        radius = _kth_radius(support, k)  # (M,)
        inside = torch.cdist(points, support) <= radius[None, :]  # (N, M)
        return float(inside.any(1).double().mean())

    return covered(fake, real), covered(real, fake)


def sliced_wasserstein(x: Tensor, y: Tensor, projections: int = 256,
                       generator: torch.Generator | None = None) -> float:
    """SW_2 between two point clouds: the root mean square over random directions of the 1-D W_2 distance, which
    is the distance of sorted projections (equal sizes; the larger set is subsampled)."""
    n = min(len(x), len(y))
    if n < 2:
        raise UserError(f"the sliced Wasserstein distance needs at least 2 points in each set, got {len(x)}, {len(y)}")
    x = x.double()[torch.randperm(len(x), generator=generator)[:n]].flatten(1)
    y = y.double()[torch.randperm(len(y), generator=generator)[:n]].flatten(1)
    d = torch.randn(x.shape[1], projections, generator=generator, dtype=torch.float64)
    d = d / d.norm(dim=0, keepdim=True)
    px, py = (x @ d).sort(0).values, (y @ d).sort(0).values
    return math.sqrt(float((px - py).square().mean()))
