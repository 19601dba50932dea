"""The variational bound: closed forms against Monte Carlo, the seed's three weightings, Gaussian data."""
import math

import pytest
import torch

from difflab.data.toy import GaussianMixture
from difflab.errors import UserError
from difflab.losses.elbo import elbo_exact, elbo_importance, prior_term, step_terms, term_from_prediction
from difflab.losses.gaussian import discretized_gaussian_log_prob, gaussian_log_prob, normal_kl
from difflab.losses.weighted import weighted_kl
from difflab.prediction import Prediction, scales
from difflab.schedules import DiscreteSchedule
from tests.oracles import MixtureDenoiser


def vp_schedule(T: int) -> DiscreteSchedule:
    """The same VP process (beta(t) from 0.1 to 20) at T steps: alpha_bar_i = exp(-int_0^{i/T} beta), exactly."""
    t = torch.arange(T + 1, dtype=torch.float64) / T
    ab = torch.exp(-(0.1 * t + 0.5 * 19.9 * t**2))
    return DiscreteSchedule(1 - ab[1:] / ab[:-1])


def gaussian_data():
    cov = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=torch.float64)
    return GaussianMixture(torch.ones(1), torch.tensor([[0.3, -0.4]], dtype=torch.float64), cov[None])


def test_normal_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    m1, lv1, m2, lv2 = torch.tensor(0.3), torch.tensor(-0.5), torch.tensor(-0.2), torch.tensor(0.4)
    x = m1 + torch.exp(0.5 * lv1) * torch.randn(400_000, generator=g, dtype=torch.float64)
    logp = lambda x, m, lv: -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / lv.exp())  # noqa: E731
    mc = (logp(x, m1, lv1) - logp(x, m2, lv2)).mean()
    assert normal_kl(m1, lv1, m2, lv2).item() == pytest.approx(mc.item(), abs=3e-3)


def test_prior_term_matches_monte_carlo():
    s = vp_schedule(1000)
    x0 = torch.tensor([[0.5, -1.0, 0.0]], dtype=torch.float64)
    ab = s.alpha_bars[-1]
    g = torch.Generator().manual_seed(1)
    xT = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    logq = (-0.5 * ((xT - ab.sqrt() * x0) ** 2 / (1 - ab) + torch.log(1 - ab))).sum(1)
    logp = (-0.5 * xT**2).sum(1)
    assert prior_term(s, x0).item() == pytest.approx((logq - logp).mean().item(), abs=3e-3)


def test_discretized_decoder_is_a_distribution_over_256_values():
    x = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for mean, lv in ((0.0, -2.0), (0.9, -8.0), (-1.3, 0.5), (0.2, -12.0)):
        lp = discretized_gaussian_log_prob(x, torch.tensor(mean, dtype=torch.float64), torch.tensor(lv, dtype=torch.float64))
        assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("t", [2, 10, 300, 1000])
def test_three_weighted_objectives_are_the_same_kl(t):
    """x0-, eps- and score-forms of L_{t-1} agree with each other and with the Gaussian KL itself."""
    s = vp_schedule(1000)
    g = torch.Generator().manual_seed(t)
    x0, eps = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randn(16, 5, generator=g, dtype=torch.float64)
    tt = torch.full((16,), t)
    alpha, sigma = scales(s, tt.double() / 1000, x0)
    x_t = alpha * x0 + sigma * eps
    truth = Prediction(x_t, alpha, sigma, x0, eps)
    model = Prediction.from_eps(x_t, alpha, sigma, eps + 0.3 * torch.randn(16, 5, generator=g, dtype=torch.float64))
    forms = [weighted_kl(model, truth, s, tt, p) for p in ("x0", "eps", "score")]
    assert torch.allclose(forms[0], forms[1], rtol=1e-9) and torch.allclose(forms[1], forms[2], rtol=1e-9)
    den = lambda x, t_, c: model  # noqa: E731  the same model, through the general KL of the bound
    kl = step_terms(den, s, x0, tt, eps, discrete=False)
    assert torch.allclose(kl, forms[0], rtol=1e-7)


def expected_bound(T: int, m: float, s2: float, variance: str) -> float:
    """E_{x0 ~ N(m, s2)}[-ELBO] per dimension in closed form, for the optimal (posterior-mean) denoiser.

    mu_q - mu_theta = c_x0 (x0 - E[x0|x_t]) and Var[x0|x_t] = s2 sigma_t^2 / (ab_t s2 + sigma_t^2), so every
    expected KL is 0.5 (log(v / st2) + st2 / v - 1 + c_x0^2 Var[x0|x_t] / v); an independent oracle for elbo_exact.
    """
    sch = vp_schedule(T)
    ab, beta = sch.alpha_bars.double(), sch.betas.double()
    t = torch.arange(1, T + 1)  # every step at once, (T,)
    var0 = s2 * (1 - ab[t]) / (ab[t] * s2 + 1 - ab[t])
    c_x0 = ab[t - 1].sqrt() * beta[t] / (1 - ab[t])
    st2 = sch.posterior_variance(t).double()
    v = beta[t] if variance == "beta" else torch.where(t > 1, st2, st2[1])  # t = 1 takes sigma_2^2
    kl = 0.5 * (torch.log(v / st2) + st2 / v - 1 + c_x0**2 * var0 / v)  # L_{t-1}, t >= 2
    l0 = 0.5 * math.log(2 * math.pi * v[0]) + var0[0] / (2 * v[0])  # continuous Gaussian decoder, mean E[x0 | x_1]
    lT = 0.5 * (ab[T] * (m**2 + s2) + (1 - ab[T]) - 1 - math.log(1 - ab[T]))
    return float(l0 + kl[1:].sum() + lT)


def diagonal_gaussian():
    return GaussianMixture(torch.ones(1), torch.tensor([[0.3, -0.4]], dtype=torch.float64),
                           torch.diag(torch.tensor([0.5, 0.1], dtype=torch.float64))[None])


def closed_form_gap(T: int, variance: str) -> float:
    """E[-ELBO] - E[-log p(x0)] in nats for the diagonal Gaussian: exact."""
    gap = 0.0
    for m, s2 in ((0.3, 0.5), (-0.4, 0.1)):
        gap += expected_bound(T, m, s2, variance) - 0.5 * math.log(2 * math.pi * math.e * s2)
    return gap


@pytest.mark.parametrize("T", [10, 100, 1000])
@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_elbo_matches_the_closed_form_for_gaussian_data(T, variance):
    """elbo_exact averaged over data equals the closed-form expected bound (Monte Carlo error only: the tolerance is
    4 standard errors of the n samples)."""
    data = diagonal_gaussian()
    s = vp_schedule(T)
    n = 3000 if T < 1000 else 1000  # T terms per sample
    x0 = data.sample(n, torch.Generator().manual_seed(T))[0]
    terms = elbo_exact(MixtureDenoiser(data, s), s, x0, variance=variance, discrete=False,
                       generator=torch.Generator().manual_seed(1), t_chunk=max(1, T // 10))
    d = terms.nll + data.log_prob(x0)  # per-sample gap, common random numbers
    se = d.std().item() / math.sqrt(n)
    assert abs(d.mean().item() - closed_form_gap(T, variance)) < 4 * se + 1e-3


def test_gaussian_bound_is_below_the_likelihood_and_closes_with_T():
    """For N(m, S) and the optimal denoiser: E[ELBO] < E[log p] at every T, the gap shrinking to 0 with beta_t."""
    gaps = [closed_form_gap(T, "beta") for T in (10, 100, 1000, 10000)]
    assert all(g > 0 for g in gaps)
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] and gaps[2] < 0.01 and gaps[3] < 0.002
    # with the posterior variance the first steps keep a gap that does not vanish (docs/likelihood.md)
    assert closed_form_gap(10000, "posterior") > 0.1


def test_importance_sampled_bound_agrees_with_the_exact_sum():
    data = gaussian_data()
    s = vp_schedule(200)
    x0 = data.sample(1500, torch.Generator().manual_seed(3))[0]
    den = MixtureDenoiser(data, s)
    exact = elbo_exact(den, s, x0, discrete=False, generator=torch.Generator().manual_seed(4), t_chunk=20).nll
    est = elbo_importance(den, s, x0, 32, discrete=False, generator=torch.Generator().manual_seed(5))
    diff = (est.nll - exact).mean().item()
    se = math.sqrt(est.nll.var().item() / len(x0) + exact.var().item() / len(x0))
    assert abs(diff) < 4 * se, (diff, se)
    assert est.stderr.mean() > 0 and torch.allclose(est.nll, est.L0 + est.Lt + est.LT)


def test_images_off_the_8bit_grid_are_refused():
    s = vp_schedule(10)
    den = MixtureDenoiser(gaussian_data(), s)
    with pytest.raises(UserError, match="8-bit grid"):
        elbo_exact(den, s, torch.rand(2, 2) * 255)
    with pytest.raises(UserError, match="8-bit grid"):
        elbo_importance(den, s, torch.full((2, 2), 0.1234))


@pytest.mark.parametrize("discrete", [True, False])
def test_the_decoder_variance_of_L0_is_beta_1_not_the_reference_codes_sigma_2(discrete):
    """L_0 with variance='beta' decodes with beta_1 (Sigma_t = beta_t at every t), not with sigma_2^2 as the DDPM
    reference code's 'fixedlarge' and improved DDPM's FIXED_LARGE do; 'posterior' uses sigma_2^2 (sigma_1^2 = 0)."""
    s = vp_schedule(1000)
    g = torch.Generator().manual_seed(11)
    x0 = torch.randint(0, 256, (6, 5), generator=g).double() / 127.5 - 1  # 8-bit pixels in [-1, 1]
    eps = torch.randn(6, 5, generator=g, dtype=torch.float64)
    t = torch.ones(6, dtype=torch.long)
    alpha, sigma = scales(s, t.double() / 1000, x0)
    x_t = alpha * x0 + sigma * eps
    pred = Prediction.from_x0(x_t, alpha, sigma, x0 + 0.008 * torch.randn(6, 5, generator=g, dtype=torch.float64))
    ll = discretized_gaussian_log_prob if discrete else gaussian_log_prob
    beta_1, sigma2_2 = s.betas[1], s.posterior_variance(2)
    assert sigma2_2 < 0.6 * beta_1  # the two conventions differ by ~2x here

    def decoder_nll(var):  # -log p(x_0 | x_1), mean E[x_0 | x_1]-prediction (mu_q at s = 0 is x0_hat)
        return -ll(x0, pred.x0, torch.log(var).expand_as(x0)).flatten(1).sum(1)

    for variance, var, other in (("beta", beta_1, sigma2_2), ("posterior", sigma2_2, beta_1)):
        L0 = term_from_prediction(pred, s, x0, t, variance=variance, discrete=discrete)
        assert torch.allclose(L0, decoder_nll(var), rtol=1e-10, atol=1e-10)
        assert not torch.allclose(L0, decoder_nll(other), rtol=1e-2, atol=1e-2)
