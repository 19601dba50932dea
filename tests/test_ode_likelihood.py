"""Exact likelihood by the probability-flow ODE, and networks trained in continuous and discrete time sampling with
every sampler."""
from __future__ import annotations

import math

import pytest
import torch

from difflab.data.toy import eight_mode_ring
from difflab.eval.exact import MixtureDenoiser
from difflab.eval.ode_likelihood import dequantize, discrete_nll, ode_log_likelihood
from difflab.samplers import SAMPLERS, NoiseSource
from difflab.schedules import VPLinear, build_schedule
from difflab.samplers.generate import generate
from difflab.schedules.grids import discrete_grid, make_grid
from difflab.train.build import build_denoiser
from difflab.utils import bits_per_dim
from difflab.train.run import load_run
from tests.oracles import ring_quality
from tests.runs import ring_run


def test_ode_log_likelihood_of_the_exact_mixture_is_its_log_density():
    gmm, s = eight_mode_ring(), VPLinear(t_min=1e-5)
    x, _ = gmm.sample(64, torch.Generator().manual_seed(0))
    one = torch.ones((), dtype=torch.float64)
    exact_prior = gmm.diffused(float(s.alpha(one)), float(s.sigma(one))).log_prob  # the true p_1
    r = ode_log_likelihood(MixtureDenoiser(gmm, s), s, x, exact_trace=True, rtol=1e-7, atol=1e-7, prior=exact_prior)
    err = r.log_p - gmm.log_prob(x)
    print(f"max |error| {err.abs().max():.2e} nats, NFE {r.nfe}")
    assert err.abs().max() < 0.01
    r0 = ode_log_likelihood(MixtureDenoiser(gmm, s), s, x, exact_trace=True, rtol=1e-7, atol=1e-7)  # N(0, I) prior
    assert abs(float((r0.log_p - gmm.log_prob(x)).mean())) < 0.01  # measured -0.00045 (prior mismatch ~ 1e-2 max)


def test_hutchinson_trace_is_unbiased():
    gmm, s = eight_mode_ring(), VPLinear(t_min=1e-5)
    x = gmm.sample(8, torch.Generator().manual_seed(1))[0].repeat(32, 1)  # 32 probes per point
    r = ode_log_likelihood(MixtureDenoiser(gmm, s), s, x, rtol=1e-6, atol=1e-6, generator=torch.Generator().manual_seed(2))
    err = (r.log_p - gmm.log_prob(x)).reshape(32, 8)
    z = err.mean() / (err.std() / math.sqrt(err.numel()))
    assert abs(float(z)) < 4 and err.std() > 0.01  # noisy per probe, right on average


def test_dequantized_bits_per_dim_pay_the_bin_volume():
    x = torch.tensor([[-1.0, 1.0]])
    xd = dequantize(x, torch.Generator().manual_seed(0))
    assert ((xd - x).abs() <= 1 / 255 + 1e-12).all()
    # a uniform density on [-1 - 1/255, 1 + 1/255]^D gives each bin probability 1/256: 8 bits per dim
    D, width = 3, 2 + 2 / 255
    assert abs(float(bits_per_dim(discrete_nll(torch.tensor([-D * math.log(width)]), D), D)) - 8.0) < 1e-9


@pytest.mark.parametrize("kind,steps", [("vp", 800), ("linear", 1500)])
def test_a_trained_network_samples_with_every_sampler(kind, steps):
    """An MLP trained in continuous time (t ~ U[t_min, 1], VP SDE) or discrete time (tests/runs.py), sampled by all
    samplers; end to end, the discrete one samples 4,000 points by 250 ancestral steps at stated quality. The work is
    bounded (steps, samples), never the time: speed belongs in bench/."""
    run = load_run(ring_run(kind, steps))
    cfg = run.cfg
    s = build_schedule(cfg.schedule)
    den = build_denoiser(cfg, run.ema)
    gmm, n = eight_mode_ring(), 1000
    if kind == "linear":
        x = generate(den, (2,), 4000, s, discrete_grid(1000, 250), seed=0, batch_size=4000).double()
        tv, on_mode = ring_quality(x, gmm)
        print(f"2-D mixture: mode TV {tv:.3f}, on-mode share {on_mode:.3f}")
        assert tv < 0.06 and on_mode > 0.87  # measured: TV 0.021, on-mode 0.887 (true data: TV ~0.01, 0.989)
    for name, spec in SAMPLERS.items():
        noise = NoiseSource.for_indices(0, range(n))
        grid = make_grid("uniform", s, 2) if name == "rk45" else make_grid(spec.grid_for(s), s, spec.steps_for_nfe(name, 400 if name == "langevin" else 100))
        x = spec.fn(den, noise.randn((2,)), s, grid, noise=noise, **({"rtol": 1e-3, "atol": 1e-3} if name == "rk45" else {})).double()
        tv, on_mode = ring_quality(x, gmm)
        print(f"{kind} {name}: TV {tv:.3f}, on-mode {on_mode:.3f}")
        assert torch.isfinite(x).all() and tv < 0.12 and on_mode > 0.75, name
