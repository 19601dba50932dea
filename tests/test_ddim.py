"""DDIM: eta = 1 is Algorithm 2; eta = 0 with the exact mixture denoiser reproduces the mixture in few steps."""
import pytest
import torch

from difflab.data.toy import eight_mode_ring
from difflab.samplers import NoiseSource, sample_ancestral
from difflab.samplers.ddim import sample_ddim
from difflab.schedules import DiscreteSchedule, linear_betas
from difflab.schedules.config import ScheduleConfig, build_schedule
from difflab.schedules.grids import discrete_grid, make_grid
from tests.oracles import MixtureDenoiser

LINEAR = DiscreteSchedule(linear_betas(1000))


@pytest.mark.parametrize("kind", ["linear", "vp", "subvp", "ve", "edm"])
def test_eta_one_is_ancestral_sampling_on_every_schedule(kind):
    """c = eta sqrt(posterior variance) for any alpha, sigma: on VE and EDM too, eta = 1 adds Algorithm 2's noise."""
    s = build_schedule(ScheduleConfig(kind=kind))
    den = MixtureDenoiser(eight_mode_ring(), s)
    x_T = s.prior_sample(torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    grid = discrete_grid(1000, 40) if kind == "linear" else make_grid("logsnr", s, 40)
    a = sample_ancestral(den, x_T, s, grid, noise=NoiseSource.for_indices(1, range(64)), variance="posterior")
    b = sample_ddim(den, x_T, s, grid, noise=NoiseSource.for_indices(1, range(64)), eta=1.0)
    c = sample_ddim(den, x_T, s, grid, noise=NoiseSource.for_indices(1, range(64)), eta=0.0)
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)
    assert (a - c).abs().max() > 1e-2  # and the noise is really there


def test_deterministic_ddim_reproduces_the_mixture_in_50_steps():
    gmm = eight_mode_ring()
    den = MixtureDenoiser(gmm, LINEAR)
    n = 4000
    noise = NoiseSource.for_indices(0, range(n))
    x = sample_ddim(den, noise.randn((2,), torch.float64), LINEAR, discrete_grid(1000, 50), noise=noise)
    d = torch.cdist(x, gmm.means)
    weights = torch.bincount(d.argmin(1), minlength=8).double() / n
    assert 0.5 * (weights - gmm.weights).abs().sum() < 0.03
    assert (d.min(1).values < 4 * 0.2).double().mean() > 0.99
