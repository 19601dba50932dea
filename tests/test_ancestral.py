"""Algorithm 2 driven by the exact denoiser of a Gaussian mixture reproduces the mixture."""
import pytest
import torch

from difflab.data.toy import GaussianMixture, eight_mode_ring
from difflab.precond import Precond, c_noise, sigma_tilde
from difflab.prediction import Clip
from difflab.samplers import NoiseSource, sample_ancestral
from difflab.samplers.generate import generate
from difflab.schedules import DiscreteSchedule, cosine_betas, linear_betas
from difflab.schedules.grids import discrete_grid
from tests.oracles import MixtureDenoiser

LINEAR = DiscreteSchedule(linear_betas(1000))


def _mode_stats(gmm: GaussianMixture, x: torch.Tensor):
    d = torch.cdist(x.double(), gmm.means)  # (N, K)
    counts = torch.bincount(d.argmin(1), minlength=len(gmm.weights)).double()
    return counts / counts.sum(), d.min(1).values


@pytest.mark.parametrize("schedule,variance", [(LINEAR, "posterior"), (DiscreteSchedule(cosine_betas(1000)), "beta")],
                         ids=["linear-posterior", "cosine-beta"])
def test_exact_score_sampling_reproduces_the_mixture(schedule, variance):
    gmm = eight_mode_ring()
    n = 4000
    x = generate(MixtureDenoiser(gmm, schedule), (2,), n, schedule, discrete_grid(1000), seed=0, batch_size=n,
                 variance=variance).double()
    weights, dist = _mode_stats(gmm, x)
    tv = 0.5 * (weights - gmm.weights).abs().sum().item()
    assert tv < 0.03, f"mode-weight total variation {tv:.3f}"  # sampling noise alone: ~0.01-0.02 at n=4000
    assert torch.allclose(x.mean(0), gmm.mean(), atol=0.08)
    assert torch.allclose(torch.cov(x.T), gmm.covariance(), atol=0.15)
    assert (dist < 4 * 0.2).double().mean() > 0.99  # every sample lies on a mode (std 0.2)


def test_strided_grid_still_reproduces_the_mixture():
    gmm = eight_mode_ring()
    x = generate(MixtureDenoiser(gmm, LINEAR), (2,), 3000, LINEAR, discrete_grid(1000, 100), seed=1, batch_size=3000)
    weights, _ = _mode_stats(gmm, x)
    assert 0.5 * (weights - gmm.weights).abs().sum().item() < 0.04


def test_full_grid_equals_algorithm_2_line_4():
    """With an eps-network, one step is x_{t-1} = (x_t - (1-a_t)/sqrt(1-ab_t) eps) / sqrt(a_t) + sigma_t z."""
    torch.manual_seed(0)
    net = lambda x, n, c: torch.sin(3 * x) + n[:, None]  # noqa: E731  any deterministic "eps network"
    den = Precond(type("N", (torch.nn.Module,), {"forward": lambda self, x, n, c: net(x, n, c)})(), LINEAR)
    x_T = torch.randn(5, 2, dtype=torch.float64)
    grid = discrete_grid(1000)
    out = sample_ancestral(den, x_T, LINEAR, grid, noise=NoiseSource.for_indices(7, range(5)))
    noise = NoiseSource.for_indices(7, range(5))
    x = x_T
    for t in range(1000, 0, -1):
        a, ab = LINEAR.alphas[t], LINEAR.alpha_bars[t]
        level = c_noise(sigma_tilde(LINEAR, torch.full((5,), t / 1000, dtype=torch.float64)))
        eps = net(x, level, None)  # on a VP schedule the eps-network sees x_t itself
        z = noise.randn_like(x) if t > 1 else torch.zeros_like(x)
        x = (x - (1 - a) / (1 - ab).sqrt() * eps) / a.sqrt() + LINEAR.posterior_variance(t).sqrt() * z
    assert torch.allclose(out, x, rtol=1e-9, atol=1e-9)


def test_every_step_from_T_to_1_is_visited():
    seen = []
    den = MixtureDenoiser(eight_mode_ring(), LINEAR)
    sample_ancestral(den, torch.randn(3, 2), LINEAR, discrete_grid(1000), noise=NoiseSource([0, 1, 2]),
                     callback=lambda i, t, x, p: seen.append(round(float(t) * 1000)))
    assert seen == list(range(1000, 0, -1))


def test_sample_k_does_not_depend_on_the_batch():
    den = MixtureDenoiser(eight_mode_ring(), LINEAR)
    grid = discrete_grid(1000, 50)
    a = generate(den, (2,), 12, LINEAR, grid, seed=3, batch_size=12)
    b = generate(den, (2,), 12, LINEAR, grid, seed=3, batch_size=5)
    c = generate(den, (2,), 4, LINEAR, grid, seed=3, batch_size=1)
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a[:4], c, atol=1e-6)
    d = generate(den, (2,), 12, LINEAR, grid, seed=4, batch_size=12)
    assert not torch.allclose(a, d)


def test_clipping_keeps_x0_in_range():
    gmm = GaussianMixture(torch.ones(1), torch.tensor([[5.0, 5.0]]), torch.eye(2)[None] * 0.01)
    x = generate(Clip(MixtureDenoiser(gmm, LINEAR)), (2,), 64, LINEAR, discrete_grid(1000, 50), seed=0)
    assert x.abs().max() <= 1.0 + 1e-5
