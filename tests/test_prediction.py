"""Parameterizations tied by Tweedie's formula."""
import pytest
import torch

from difflab.data.toy import eight_mode_ring
from difflab.prediction import FROM, Prediction
from difflab.prediction import VIEWS as PARAMETERIZATIONS
from difflab.schedules import DiscreteSchedule, linear_betas
from tests.oracles import MixtureDenoiser


def _state(seed=0):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(64, 3, 8, 8, generator=g, dtype=torch.float64)
    alpha = torch.rand(64, 1, 1, 1, generator=g, dtype=torch.float64) * 0.98 + 0.01
    sigma = (1 - alpha**2).sqrt()
    return x_t, alpha, sigma, torch.randn(64, 3, 8, 8, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("src", PARAMETERIZATIONS)
@pytest.mark.parametrize("dst", PARAMETERIZATIONS)
def test_round_trips_are_exact_in_float64(src, dst):
    x_t, alpha, sigma, out = _state()
    p = FROM[src](x_t, alpha, sigma, out)
    q = FROM[dst](x_t, alpha, sigma, p.target(dst))
    for name in PARAMETERIZATIONS:
        assert torch.allclose(p.target(name), q.target(name), rtol=1e-10, atol=1e-10), (src, dst, name)
    assert torch.allclose(q.target(src), out, rtol=1e-10, atol=1e-10)


def test_conversions_match_the_seed():
    x_t, alpha, sigma, eps = _state(1)
    p = Prediction.from_eps(x_t, alpha, sigma, eps)
    assert torch.allclose(p.x0, (x_t - sigma * eps) / alpha)  # Interpretation 2: x0 = (x_t - sqrt(1-ab) eps)/sqrt(ab)
    assert torch.allclose(p.score, -eps / sigma)  # Interpretation 3: grad log q(x_t|x0) = -eps / sqrt(1-ab)
    # Tweedie: x0 = (x_t + (1 - ab) score) / sqrt(ab)
    assert torch.allclose(p.x0, (x_t + sigma**2 * p.score) / alpha)


@pytest.mark.parametrize("t", [0.01, 0.1, 0.3, 0.6, 0.95])
def test_tweedie_score_equals_autograd_score_of_the_true_marginal(t):
    """E[x0|x_t] from the exact mixture posterior, through Tweedie, equals grad log q(x_t) by autograd."""
    gmm = eight_mode_ring()
    sched = DiscreteSchedule(linear_betas(1000))
    den = MixtureDenoiser(gmm, sched)
    tt = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = sched.alpha(tt), sched.sigma(tt)
    x = (gmm.sample(256, torch.Generator().manual_seed(2))[0] * alpha
         + sigma * torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    x.requires_grad_(True)
    logq = gmm.diffused(alpha, sigma).log_prob(x).sum()
    (auto,) = torch.autograd.grad(logq, x)
    pred = den(x.detach(), tt.expand(256))
    assert torch.allclose(pred.score, auto, rtol=1e-8, atol=1e-8)
