"""Sample-quality metrics against closed forms and synthetic cases where the right answer is known."""
import math

import pytest
import torch

from difflab.errors import UserError
from difflab.eval.metrics import Stats, frechet_distance, kid, precision_recall, sliced_wasserstein


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_frechet_distance_closed_forms():
    D = 6
    g = gen(0)
    mu1, mu2 = torch.randn(D, generator=g, dtype=torch.float64), torch.randn(D, generator=g, dtype=torch.float64)
    s1, s2 = torch.rand(D, generator=g, dtype=torch.float64) + 0.1, torch.rand(D, generator=g, dtype=torch.float64) + 0.1
    a, b = Stats(mu1, torch.diag(s1), 10), Stats(mu2, torch.diag(s2), 10)
    # commuting covariances: |mu1 - mu2|^2 + sum (sqrt s1 - sqrt s2)^2
    exact = float((mu1 - mu2).square().sum() + (s1.sqrt() - s2.sqrt()).square().sum())
    assert frechet_distance(a, b) == pytest.approx(exact, rel=1e-10)
    # non-commuting: the same as the distance after rotating both by one orthogonal matrix; symmetric; zero to itself
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    A = torch.randn(D, D, generator=g, dtype=torch.float64)
    S = A @ A.T + 0.1 * torch.eye(D, dtype=torch.float64)
    c = Stats(mu1, S, 10)
    rot = lambda s: Stats(q @ s.mu, q @ s.sigma @ q.T, 10)  # noqa: E731
    assert frechet_distance(c, b) == pytest.approx(frechet_distance(rot(c), rot(b)), rel=1e-9)
    assert frechet_distance(c, b) == pytest.approx(frechet_distance(b, c), rel=1e-9)
    assert abs(frechet_distance(c, c)) < 1e-9
    # and the matrix square root it relies on: tr sqrt(S1 S2) by a brute-force sqrtm of the symmetric form
    w, v = torch.linalg.eigh(S)
    r = (v * w.sqrt()) @ v.T
    m = r @ torch.diag(s2) @ r
    w2, v2 = torch.linalg.eigh(m)
    root = (v2 * w2.sqrt()) @ v2.T
    assert torch.allclose(root @ root, m, atol=1e-10)
    brute = float((mu1 - mu2).square().sum() + S.trace() + s2.sum() - 2 * root.trace())
    assert frechet_distance(c, b) == pytest.approx(brute, rel=1e-10)


def test_fid_of_samples_converges_to_the_gaussian_answer():
    g = gen(1)
    D, n = 4, 200_000
    x = torch.randn(n, D, generator=g)
    y = 2 * torch.randn(n, D, generator=g) + 1
    exact = D * 1.0 + D * (1 - 2) ** 2  # |mu|^2 = D, (sqrt 1 - sqrt 4)^2 per dim
    assert frechet_distance(Stats.of(x), Stats.of(y)) == pytest.approx(exact, rel=0.02)


def test_kid_is_unbiased_at_zero_and_positive_when_apart():
    g = gen(2)
    x, y = torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g)
    same, sd = kid(x, y, subsets=20, subset_size=500, generator=g)
    assert abs(same) < 3 * sd / math.sqrt(20) + 1e-4  # unbiased: zero within its standard error
    apart, _ = kid(x, y + 0.5, subsets=20, subset_size=500, generator=g)
    assert apart > 20 * abs(same) and apart > 0


def mixture(n: int, modes: list[int], g: torch.Generator, spread: float = 0.05) -> torch.Tensor:
    centres = torch.eye(10, 8) * 4  # 8 orthogonal modes (rows 8, 9 repeat zero: unused)
    k = torch.tensor(modes)[torch.randint(len(modes), (n,), generator=g)]
    return centres[k] + spread * torch.randn(n, 8, generator=g)


def test_precision_and_recall_move_the_expected_way():
    g = gen(3)
    real = mixture(1000, list(range(8)), g)
    p, r = precision_recall(real, mixture(1000, list(range(8)), g))
    assert p > 0.75 and r > 0.75  # the same distribution (k-NN balls of k = 3 miss some of it in 8-D)
    p, r = precision_recall(real, mixture(1000, [0, 1], g))  # collapsed to 2 of 8 modes
    assert p > 0.75 and r < 0.35
    blurred = real + 1.0 * torch.randn(real.shape, generator=g)  # every sample off the manifold
    p, r = precision_recall(real, blurred)
    assert p < 0.2
    with pytest.raises(UserError):
        precision_recall(real[:3], blurred)


def test_sliced_wasserstein_of_a_shift():
    g = gen(4)
    x = torch.randn(1000, 3, generator=g)
    s = torch.tensor([1.0, -2.0, 0.5])
    assert sliced_wasserstein(x, x, generator=g) == 0
    # projections of a shift s onto random unit directions: E (d.s)^2 = |s|^2 / D (the same points shifted: the only
    # randomness is the directions', ~1 % of the root at 1000 of them)
    assert sliced_wasserstein(x, x + s, projections=1000, generator=g) == pytest.approx(
        float(s.norm()) / math.sqrt(3), rel=0.05)
