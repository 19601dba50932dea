"""Time grids: started below t = 1 (SDEdit, image-to-image), and bit-identical to the earlier grids from t = 1."""
import math

import pytest
import torch

from difflab.errors import UserError
from difflab.schedules import ScheduleConfig, build_schedule
from difflab.schedules.grids import GRIDS, check_grid, discrete_grid, log_snr_grid, make_grid

KINDS = ("linear", "cosine", "vp", "subvp", "ve", "edm")
SCHEDULES = {k: build_schedule(ScheduleConfig(kind=k)) for k in KINDS}
CASES = [(k, g) for k in KINDS for g in GRIDS if g != "discrete" or SCHEDULES[k].steps is not None]
OLD_CASES = [(k, g) for k, g in CASES if g != "stable"]  # grids that existed before t_start
T64 = torch.float64


# -- the grids as they were before t_start, frozen: t_start = 1 must reproduce them bit for bit -----------------------
def _old_pin(t, s):
    t = t.clone()
    t[-1], t[0] = s.t_min, 1.0
    return t


def _old_finish(t):
    return torch.cat([t, t.new_zeros(1)])


def _old_logsnr(s, n, lambda_range=None):
    ends = s.log_snr(torch.tensor([1.0, s.t_min], dtype=T64))
    if lambda_range is None:
        return _old_finish(_old_pin(s.t_of_log_snr(torch.linspace(float(ends[0]), float(ends[1]), n, dtype=T64)), s))
    lo, hi = max(lambda_range[0], float(ends[0])), min(lambda_range[1], float(ends[1]))
    inner = s.t_of_log_snr(torch.linspace(lo, hi, n - 1, dtype=T64))
    return _old_finish(torch.cat([torch.ones(1, dtype=T64), inner.clamp(max=1 - 1e-9)]))


def _old_grid(name, s, n, rho=7.0):
    if name == "discrete":
        return torch.linspace(s.T, 0, n + 1, dtype=T64).round() / s.T
    if name == "uniform":
        return _old_finish(torch.linspace(1.0, s.t_min, n, dtype=T64))
    if name == "logsnr":
        return _old_logsnr(s, n)
    if name == "karras":
        ends = torch.exp(-0.5 * s.log_snr(torch.tensor([1.0, s.t_min], dtype=T64)))
        u = torch.linspace(0, 1, n, dtype=T64)
        sig = (ends[0] ** (1 / rho) + u * (ends[1] ** (1 / rho) - ends[0] ** (1 / rho))) ** rho
        return _old_finish(_old_pin(s.t_of_log_snr(-2 * torch.log(sig)), s))
    k = math.log2(n / 10)  # focus
    ends = s.log_snr(torch.tensor([1.0, s.t_min], dtype=T64))
    lo, hi = -5.0 - k, 6.0 + k
    if n < 3 or (lo <= float(ends[0]) and hi >= float(ends[1])):
        return _old_logsnr(s, n)
    return _old_logsnr(s, n, (lo, hi))


@pytest.mark.parametrize("kind,grid", OLD_CASES)
def test_t_start_one_reproduces_the_earlier_grids_bit_for_bit(kind, grid):
    s = SCHEDULES[kind]
    for n in (1, 2, 3, 5, 10, 12, 20, 50, 80, 100, 200, 1000):
        old = _old_grid(grid, s, n)
        for new in (make_grid(grid, s, n), make_grid(grid, s, n, t_start=1.0)):
            if grid == "focus" and float(old[0] - old[1]) < 1e-8:
                # the one change: a window reaching below lambda(1) but not up to lambda(t_min) used to take a wasted
                # first step 1 -> 1 - 1e-9 (here VE at 80, EDM at 200, sub-VP at 1000); now its log-SNR steps start at 1
                assert len(new) == len(old) and new[0] == 1 and float(new[0] - new[1]) > 1e-3 and new[-2] == old[-2]
                continue
            assert new.dtype == T64 and torch.equal(new, old), (kind, grid, n)
        if grid == "karras":
            assert torch.equal(make_grid(grid, s, n, rho=3.0, t_start=1.0), _old_grid(grid, s, n, rho=3.0))
    if grid == "discrete":
        for n in (1, 7, 333, 999, 1000):
            assert torch.equal(discrete_grid(1000, n, t_start=1.0), _old_grid("discrete", s, n))


@pytest.mark.parametrize("kind,grid", CASES)
@pytest.mark.parametrize("t_start", [0.9, 0.4, 0.05])
def test_a_grid_from_t_start_runs_down_to_t_min_then_0(kind, grid, t_start):
    s = SCHEDULES[kind]
    for n in (2, 3, 10, 40):
        g = make_grid(grid, s, n, t_start=t_start)
        assert torch.equal(check_grid(g), g) and len(g) == n + 1  # strictly decreasing, inside [0, 1]
        assert g[-1].item() == 0.0
        if grid == "discrete":  # steps strided from i_0 = round(t_start T): the last before 0 is round(i_0 / n)
            i0 = round(t_start * s.T)
            assert torch.equal(g * s.T, (g * s.T).round()) and g[0].item() == i0 / s.T
            assert g[-2].item() == round(i0 / n) / s.T
            full = make_grid(grid, s, i0, t_start=t_start)  # unstrided: every step i_0, ..., 1 (= t_min), then 0
            assert torch.equal(full, torch.arange(i0, -1, -1, dtype=T64) / s.T) and full[-2].item() == s.t_min
            continue
        assert g[0].item() == t_start
        if grid in ("focus", "stable"):  # both may stop above t_min, at lambda = 6 + k (stable: or lower)
            assert g[-2].item() >= s.t_min and float(g[0] - g[1]) > 1e-6  # and no wasted first step
        else:
            assert g[-2].item() == pytest.approx(s.t_min, rel=1e-12)


@pytest.mark.parametrize("kind", ["linear", "vp", "ve", "edm"])
def test_below_t_start_each_grid_keeps_its_spacing_rule(kind):
    s, t0, n = SCHEDULES[kind], 0.3, 12
    tt = torch.tensor(t0, dtype=T64)
    lam = lambda g: s.log_snr(g[:-1])  # noqa: E731  (without the final t = 0)
    g = make_grid("uniform", s, n, t_start=t0)
    assert torch.allclose(g[:-1], torch.linspace(t0, s.t_min, n, dtype=T64), rtol=0, atol=1e-15)
    d = lam(make_grid("logsnr", s, n, t_start=t0)).diff()  # log-SNR uniform from lambda(t_start) to lambda(t_min)
    assert torch.allclose(d, d.mean().expand_as(d), rtol=1e-7)
    assert lam(make_grid("logsnr", s, n, t_start=t0))[0].item() == pytest.approx(float(s.log_snr(tt)))
    root = torch.exp(-0.5 * lam(make_grid("karras", s, n, t_start=t0))) ** (1 / 7)  # sigma~^(1/rho) uniform
    assert torch.allclose(root.diff(), root.diff().mean().expand(n - 1), rtol=1e-7)
    assert root[0].item() ** 7 == pytest.approx(float(s.sigma(tt) / s.alpha(tt)), rel=1e-9)  # s_max = sigma~(t_start)


def test_focus_from_t_start_jumps_into_its_window_or_starts_inside_it():
    s, n = SCHEDULES["vp"], 10  # window [-5, 6]
    g = make_grid("focus", s, n, t_start=0.9)  # lambda(0.9) < -5: a first jump from t_start to lambda = -5
    lam = s.log_snr(g[1:-1])
    assert float(s.log_snr(g[:1])) < -5 and lam[0].item() == pytest.approx(-5.0)
    assert lam[-1].item() == pytest.approx(6.0)
    g = make_grid("focus", s, n, t_start=0.4)  # lambda(0.4) > -5: log-SNR steps from lambda(t_start) to 6
    lam = s.log_snr(g[:-1])
    assert -5 < lam[0].item() and lam[-1].item() == pytest.approx(6.0)
    assert torch.allclose(lam.diff(), lam.diff().mean().expand(n - 1), rtol=1e-7)
    assert torch.equal(make_grid("focus", s, n, t_start=0.4), log_snr_grid(s, n, (-5.0, 6.0), t_start=0.4))


def test_the_discrete_grid_strides_the_steps_below_t_start():
    s = SCHEDULES["linear"]
    g = make_grid("discrete", s, 5, t_start=0.5)
    assert torch.equal(g, torch.tensor([500, 400, 300, 200, 100, 0], dtype=T64) / 1000)
    g = make_grid("discrete", s, 3, t_start=0.2504)  # round(250.4) = 250
    assert torch.equal(g * 1000, torch.tensor([250.0, 167.0, 83.0, 0.0], dtype=T64))
    assert torch.equal(discrete_grid(1000, t_start=0.01), torch.arange(10, -1, -1, dtype=T64) / 1000)  # all 10 steps
    assert torch.equal(discrete_grid(1000, 1, t_start=0.0006), torch.tensor([0.001, 0.0], dtype=T64))  # rounds to 1


def test_bad_t_start_is_refused_in_one_line():
    vp, lin = SCHEDULES["vp"], SCHEDULES["linear"]
    for grid in ("uniform", "karras", "logsnr", "focus"):
        for bad in (1.5, vp.t_min, 0.0, -0.2):
            with pytest.raises(UserError, match="t_start") as e:
                make_grid(grid, vp, 10, t_start=bad)
            assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="rounds to step 0"):
        make_grid("discrete", lin, 1, t_start=0.0004)
    with pytest.raises(UserError, match="t_start"):
        make_grid("discrete", lin, 1, t_start=1.2)
    with pytest.raises(UserError, match=r"1\.\.10 "):  # only 10 table steps below t_start = 0.01
        make_grid("discrete", lin, 11, t_start=0.01)
    with pytest.raises(UserError, match="discrete schedule"):
        make_grid("discrete", vp, 10)


@pytest.mark.parametrize("kind", KINDS)
def test_the_stable_grid_bounds_every_log_snr_step(kind):
    """From t = 1 it starts at lambda = min(-5 - log2(n / 10), -4) (or at lambda(1) if that is higher), steps
    evenly in lambda by at most max_step, and reaches lambda(t_min) once the budget allows."""
    s = SCHEDULES[kind]
    lam1, lam_min = (float(v) for v in s.log_snr(torch.tensor([1.0, s.t_min], dtype=T64)))
    for n in (1, 2, 5, 10, 40, 1000):
        for max_step in (1.0, 2.5):
            g = make_grid("stable", s, n, max_step=max_step)
            lam = s.log_snr(g[:-1])
            assert len(g) == n + 1 and g[-1] == 0 and torch.equal(check_grid(g), g)
            lo = max(min(-5 - math.log2(n / 10), -4.0), lam1)
            assert float(lam[0]) == pytest.approx(lo, abs=1e-9) and (g[0] == 1) == (lo == lam1)
            if n > 1:
                d = lam.diff()
                assert float(d.max()) <= max_step + 1e-9 and float(d.max() - d.min()) < 1e-6  # even steps
            top = min(6 + math.log2(n / 10), lo + max_step * (n - 1), lam_min) if n > 1 else lo
            assert float(lam[-1]) == pytest.approx(top, abs=1e-6)
    with pytest.raises(UserError, match="max_step"):
        make_grid("stable", s, 10, max_step=0.0)
