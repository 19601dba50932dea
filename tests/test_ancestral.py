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
    out = sample_ancestral(den, x_T, LINEAR, grid, noise=NoiseSource.for_indices(7, range(5)),
                           variance="posterior")
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


def test_analytic_variance_is_the_spread_of_the_step_on_gaussian_data():
    """Data N(0, v I): E[x_0 | x_t] and Var(x_0 | x_t) = v sigma^2 / (alpha^2 v + sigma^2) are exact, so
    x_s ~ q(x_s | x_t, x_0) with x_0 from its posterior has variance post_var + c_x0^2 Var(x_0 | x_t). The analytic
    variance, read from eps_hat alone, must give that (averaged over samples: each reads its own |eps_hat|^2), for a
    long stride where it is far from the posterior variance, and equal the posterior variance on one table step.
    (Where sigma_t^2 / alpha_t^2 sqrt(2 / d) >> 1 the per-sample estimate is mostly noise and the clamp to [0, 1]
    decides; there the stride's x_0 coefficient c_x0 = alpha_s (1 - SNR_t / SNR_s) is small unless s is far below.)"""
    from difflab.prediction import Prediction
    from difflab.reverse import analytic_var, step_coefficients

    v, d, n = 0.3, 256, 4000
    g = torch.Generator().manual_seed(0)
    for t_i, s_i in ((250, 50), (150, 10)):  # alpha_t^2 >= 0.5: |eps_hat|^2 / d resolves the spread
        t, s = torch.tensor(t_i / 1000, dtype=torch.float64), torch.tensor(s_i / 1000, dtype=torch.float64)
        a, sg = LINEAR.alpha(t), LINEAR.sigma(t)
        x_t = torch.randn(n, d, generator=g, dtype=torch.float64) * (a**2 * v + sg**2).sqrt()  # the exact marginal
        pred = Prediction.from_eps(x_t, a, sg, sg * x_t / (a**2 * v + sg**2))  # the exact E[eps | x_t]
        step = step_coefficients(LINEAR, t, s)
        exact = step.post_var + step.c_x0**2 * v * sg**2 / (a**2 * v + sg**2)
        got = analytic_var(step, pred)
        assert got.shape == (n, 1)
        assert abs(float(got.mean()) / float(exact) - 1) < 0.02, (t_i, float(got.mean()), float(exact))
        assert float(exact) > 1.5 * float(step.post_var)  # the stride's extra spread is really there
    one = step_coefficients(LINEAR, torch.tensor(0.5, dtype=torch.float64), torch.tensor(0.499, dtype=torch.float64))
    x = torch.randn(64, d, generator=g, dtype=torch.float64)
    near = analytic_var(one, Prediction.from_eps(x, LINEAR.alpha(torch.tensor(0.5)), LINEAR.sigma(torch.tensor(0.5)), 0.9 * x))
    assert torch.allclose(near, one.post_var.expand_as(near), rtol=0.02)
