"""The forward process against the seed's closed forms, step-by-step composition and brute-force conditioning."""
import math

import pytest
import torch

from difflab.errors import UserError
from difflab.schedules import ScheduleConfig, DiscreteSchedule, build_schedule, cosine_betas, linear_betas
from difflab.schedules.grids import check_grid, discrete_grid

SCHEDULES = {"linear": DiscreteSchedule(linear_betas(1000)), "cosine": DiscreteSchedule(cosine_betas(1000))}


def test_linear_table_matches_ddpm():
    s = SCHEDULES["linear"]
    assert s.betas.dtype == torch.float64 and s.T == 1000
    assert s.betas[1].item() == pytest.approx(1e-4) and s.betas[1000].item() == pytest.approx(0.02)
    ab = 1.0
    for t in range(1, 1001):  # alpha_bar_t = prod_{i<=t} (1 - beta_i), in plain Python floats
        ab *= 1 - (1e-4 + (0.02 - 1e-4) * (t - 1) / 999)
        if t in (1, 10, 500, 1000):
            assert s.alpha_bars[t].item() == pytest.approx(ab, rel=1e-12)
    assert s.alpha_bars[1000].item() < 1e-4  # q(x_T | x_0) is close to N(0, I)


def test_cosine_table_matches_closed_form():
    s = SCHEDULES["cosine"]
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 100, 500, 900):
        assert s.alpha_bars[t].item() == pytest.approx(f(t) / f(0), rel=1e-10)


@pytest.mark.parametrize("name", SCHEDULES)
def test_kernel_equals_composed_steps_exactly(name):
    """q(x_t|x_0) = N(sqrt(ab_t) x0, (1-ab_t) I) equals composing q(x_t|x_{t-1}) t times (mean and variance)."""
    s = SCHEDULES[name]
    mean_coef, var = 1.0, 0.0
    for t in range(1, s.T + 1):
        a = s.alphas[t].item()
        mean_coef, var = math.sqrt(a) * mean_coef, a * var + (1 - a)  # x_t = sqrt(a_t) x_{t-1} + sqrt(1-a_t) eps
        if t % 97 == 0 or t == s.T:
            assert mean_coef == pytest.approx(s.alpha(s.time(t)).item(), rel=1e-10)
            assert var == pytest.approx(s.sigma(s.time(t)).item() ** 2, rel=1e-10)


def test_kernel_matches_monte_carlo_chain():
    s = SCHEDULES["linear"]
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([1.5, -0.7], dtype=torch.float64)
    x = x0.repeat(200_000, 1)
    for t in range(1, 301):  # run the Markov chain q(x_t | x_{t-1})
        a = s.alphas[t]
        x = a.sqrt() * x + (1 - a).sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    se = 4 / math.sqrt(x.shape[0])
    assert torch.allclose(x.mean(0), s.alpha(t) * x0, atol=se)
    assert torch.allclose(x.var(0), s.sigma(t).pow(2).expand(2), atol=se * 2)


@pytest.mark.parametrize("t", [2, 10, 500, 1000])
def test_posterior_matches_brute_force_gaussian_conditioning(t):
    """(x_{t-1}, x_t) | x0 is jointly Gaussian; condition on x_t with the generic formula."""
    s = SCHEDULES["linear"]
    ab_prev, a = s.alpha_bars[t - 1], s.alphas[t]
    x0, xt = torch.tensor(0.8, dtype=torch.float64), torch.tensor(-0.3, dtype=torch.float64)
    # x_{t-1} = sqrt(ab_prev) x0 + sqrt(1-ab_prev) e1 ; x_t = sqrt(a) x_{t-1} + sqrt(1-a) e2
    m1, v11 = ab_prev.sqrt() * x0, 1 - ab_prev
    m2, v12 = a.sqrt() * m1, a.sqrt() * v11
    v22 = a * v11 + (1 - a)
    mean_bf = m1 + v12 / v22 * (xt - m2)
    var_bf = v11 - v12**2 / v22
    c_xt, c_x0 = s.posterior_mean_coefs(t)
    assert (c_xt * xt + c_x0 * x0).item() == pytest.approx(mean_bf.item(), rel=1e-10, abs=1e-14)
    assert s.posterior_variance(t).item() == pytest.approx(var_bf.item(), rel=1e-10, abs=1e-16)
    # and the seed's written formulas, term by term
    ab = s.alpha_bars[t]
    assert c_xt.item() == pytest.approx((a.sqrt() * (1 - ab_prev) / (1 - ab)).item(), rel=1e-14)
    assert s.posterior_variance(t).item() == pytest.approx(((1 - a) * (1 - ab_prev) / (1 - ab)).item(), rel=1e-14)


def test_posterior_variance_is_zero_at_t1():
    assert SCHEDULES["linear"].posterior_variance(1).item() == 0.0


@pytest.mark.parametrize("name", SCHEDULES)
def test_continuous_view_on_grid_and_inverses(name):
    s = SCHEDULES[name]
    i = torch.arange(0, s.T + 1)
    t = s.time(i)
    assert torch.allclose(s.alpha_bar(t), s.alpha_bars, rtol=1e-12)
    assert torch.allclose(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones_like(t), atol=1e-12)
    lam = s.log_snr(t[1:])
    assert bool((lam[1:] < lam[:-1]).all())  # decreasing
    tt = torch.rand(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.999 + 0.001
    assert torch.allclose(s.t_of_log_snr(s.log_snr(tt)), tt, atol=1e-9)


def test_grids_and_config_errors():
    g = discrete_grid(1000)
    assert g[0].item() == 1.0 and g[-1].item() == 0.0 and len(g) == 1001
    g = discrete_grid(1000, 10)
    assert g[0].item() == 1.0 and g[-1].item() == 0.0 and len(g) == 11
    with pytest.raises(UserError, match="decreasing"):
        check_grid(torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(UserError):
        discrete_grid(1000, 0)
    with pytest.raises(UserError, match="schedule.kind"):
        ScheduleConfig(kind="quadratic")
    with pytest.raises(UserError, match="beta"):
        ScheduleConfig(beta_1=0.5, beta_T=0.1)


@pytest.mark.parametrize("kind", ["linear", "cosine", "vp", "subvp", "ve", "edm"])
def test_steps_marks_the_discrete_tables(kind):
    """Schedule.steps is T for a beta table and None in continuous time: no attribute guessing."""
    s = build_schedule(ScheduleConfig(kind=kind, T=50))
    assert s.steps == (50 if kind in ("linear", "cosine") else None)
    assert s.steps is None or s.steps == s.T


@pytest.mark.parametrize("name,T", [("linear", 1000), ("cosine", 1000), ("linear", 100), ("cosine", 100),
                                    ("linear", 7)])
def test_sde_at_a_table_step_is_that_of_the_interval_below(name, T):
    """At t = i / T, f = d log alpha / dt and g^2 = -sigma^2 d lambda / dt of ((i-1)/T, i/T), where a reverse step
    from t = i / T goes (T = 100: i / T * T is an ulp above i at i = 7, 14, 28, 55, 56, below at 29, 57, 58)."""
    s = DiscreteSchedule((linear_betas if name == "linear" else cosine_betas)(T))
    off = {7, 14, 28, 29, 55, 56, 57, 58} if T == 100 else set()
    i = torch.tensor(sorted({1, 2, 3, T // 3, T // 2, T - 1, T} | off))
    t = s.time(i)
    log_ab = torch.log(s.alpha_bars)
    below = T * (log_ab[i] - log_ab[i - 1])  # d log alpha_bar / dt on ((i-1)/T, i/T)
    assert torch.allclose(s.f(t), 0.5 * below, rtol=1e-12, atol=0)  # log alpha = log alpha_bar / 2
    h = 1e-4 / T  # d lambda / dt from below, second-order one-sided differences inside the interval
    dlam = (3 * s.log_snr(t) - 4 * s.log_snr(t - h) + s.log_snr(t - 2 * h)) / (2 * h)
    assert torch.allclose(s.g2(t), -s.sigma(t) ** 2 * dlam, rtol=1e-6, atol=0)
    assert torch.allclose(s.g2(t), -below, rtol=1e-12, atol=0)  # VP, log alpha_bar linear: g^2 = -d log alpha_bar / dt
    up = i < T  # and not the interval above, whose slope differs for these increasing betas
    above = T * (log_ab[i[up] + 1] - log_ab[i[up]])
    assert bool(((s.f(t[up]) - 0.5 * above).abs() > 1e-6 * above.abs()).all())
    on_grid = s.log_alpha_bar(s.time(torch.arange(T + 1)))  # the table (exactly where i / T * T == i)
    assert torch.equal(on_grid, log_ab) if T != 100 else torch.allclose(on_grid, log_ab, rtol=1e-14, atol=1e-15)
