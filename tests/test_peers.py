"""diffusers' samplers on exact Gaussian models: right samples, right noise levels, NFE as promised, one clear line."""
import sys

import pytest
import torch

from difflab.errors import UserError
from difflab.eval.peers import PEER_SAMPLERS, peer_is_stochastic, peer_steps_for_nfe, sample_with_peer

BETAS = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
M = torch.tensor([0.3, -0.2], dtype=torch.float64)
S = 0.25
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' numpy 2 warnings, ~2000 a run


def gaussian_eps(m: torch.Tensor, s: float, seen: list | None = None):
    """Exact E[eps | x_t] for x0 ~ N(m, s^2 I); records (x_t, alpha_bar, eps) in `seen` when given."""
    def eps_model(x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        ab = alpha_bar[:, None]  # (B, 1)
        eps = (1 - ab).sqrt() * (x_t - ab.sqrt() * m) / (ab * s**2 + 1 - ab)
        if seen is not None:
            seen.append((x_t, ab, eps))
        return eps
    return eps_model


def noise(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def diffusers():
    return pytest.importorskip("diffusers")


@pytest.mark.parametrize("name", PEER_SAMPLERS)
def test_peer_samples_the_gaussian(diffusers, name):
    x, calls = sample_with_peer(name, 50, gaussian_eps(M, S), BETAS, noise(4000))
    assert calls == (50 if peer_steps_for_nfe(name, 50) is not None else 49)  # heun, kdpm2: odd NFE only
    assert x.dtype == torch.float64 and x.shape == (4000, 2) and torch.isfinite(x).all()
    assert (x.mean(0) - M).abs().max() < 0.04
    assert (x.std(0) / S - 1).abs().max() < 0.25  # ddpm, euler_ancestral: -18% at 50 steps (fixed-small variance)


@pytest.mark.parametrize("name", PEER_SAMPLERS)
def test_peer_model_gets_the_noise_level_of_its_input(diffusers, name):
    """On a point mass (s = 0) the VP input must be sqrt(ab) m + sqrt(1 - ab) eps with eps ~ N(0, I) at the ab the
    model is told; the ODE peers solve it exactly, so eps stays x_T's at every call (a wrong ab breaks both)."""
    seen = []
    sample_with_peer(name, 25, gaussian_eps(M, 0.0, seen), BETAS, noise(2000))
    for x_t, ab, eps in seen:
        if peer_is_stochastic(name):
            assert eps.mean().abs() < 0.05 and (eps.std() - 1).abs() < 0.05
        else:
            assert ((eps - seen[0][2]) * (1 - ab).sqrt()).abs().max() < 1e-4  # float32 inside diffusers: ~1e-6


def test_nfe_rules():
    assert [peer_steps_for_nfe("ddim", n) for n in (1, 50)] == [1, 50]
    assert [peer_steps_for_nfe("heun", n) for n in (1, 49, 50)] == [1, 25, None]
    assert [peer_steps_for_nfe("kdpm2", n) for n in (2, 51)] == [None, 26]
    assert [peer_steps_for_nfe("pndm", n) for n in (12, 13, 50)] == [None, 4, 41]
    assert peer_steps_for_nfe("unipc", 0) is None
    assert {n for n in PEER_SAMPLERS if peer_is_stochastic(n)} == {"ddpm", "euler_ancestral"}


@pytest.mark.parametrize("nfe", [13, 14, 20])
def test_nfe_is_counted_as_promised(diffusers, nfe):
    for name in PEER_SAMPLERS:
        _, calls = sample_with_peer(name, nfe, gaussian_eps(M, S), BETAS, noise(2))
        if peer_steps_for_nfe(name, nfe) is not None:
            assert calls == nfe, name
        else:  # the largest reachable count below
            assert calls < nfe and peer_steps_for_nfe(name, calls) is not None
            assert all(peer_steps_for_nfe(name, n) is None for n in range(calls + 1, nfe)), name


def test_seed_drives_only_the_stochastic_peers(diffusers):
    for name in ("ddpm", "euler_ancestral", "dpmpp_2m"):
        a, b, c = (sample_with_peer(name, 10, gaussian_eps(M, S), BETAS, noise(8), seed=k)[0] for k in (0, 0, 1))
        assert torch.equal(a, b)
        assert torch.equal(a, c) != peer_is_stochastic(name)


def test_missing_diffusers_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    with pytest.raises(UserError, match=r"pip install -c bench/constraints.txt -r bench/requirements.txt"):
        sample_with_peer("ddim", 10, gaussian_eps(M, S), BETAS, noise(2))


@pytest.mark.parametrize("name, nfe, message", [
    ("plms", 10, "unknown peer sampler 'plms'; choose one of ddim"),
    ("pndm", 12, "cannot run on nfe=12"),
    ("ddim", 1001, "at most 1000 steps"),
    ("dpmpp_2m", 1000, "at most 999 steps"),
])
def test_bad_requests_are_user_errors(name, nfe, message):
    with pytest.raises(UserError, match=message):
        sample_with_peer(name, nfe, gaussian_eps(M, S), BETAS, noise(2))
