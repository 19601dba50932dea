"""The contract the applications plug into: preconditioned networks see only the noise level, step hooks, starts
below t = 1, conditions with null values and their dropout in training."""
import pytest
import torch

from difflab.condition import LABEL, Condition, check_condition
from difflab.data.toy import GaussianMixture, eight_mode_ring
from difflab.errors import UserError
from difflab.losses.objective import OBJECTIVES, Batch
from difflab.nn import MLP, MLPConfig
from difflab.noise import NoiseSource
from difflab.precond import PARAMETERIZATIONS, Parameterization, Precond
from difflab.samplers import SAMPLERS, CountingDenoiser
from difflab.samplers.generate import generate
from difflab.schedules.config import ScheduleConfig, build_schedule
from difflab.schedules.grids import make_grid
from tests.oracles import MixtureDenoiser

T64 = torch.float64


def _perturbed(net: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net.double().eval()


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_one_network_gives_the_same_x0_at_equal_log_snr_on_every_vp_schedule(param):
    """Linear table, cosine table, VP SDE: at equal lambda, alpha and sigma agree, and the preconditioned network
    sees the same input and noise level, so x0_hat agrees to float rounding (the network never sees t)."""
    net = _perturbed(MLP(MLPConfig(dim=3, hidden=32, depth=2)))
    lam = torch.linspace(-8, 8, 9, dtype=T64)  # inside every schedule's range
    x0 = torch.randn(9, 3, dtype=T64, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(9, 3, dtype=T64, generator=torch.Generator().manual_seed(2))
    outs, ts = [], []
    for kind in ("linear", "cosine", "vp"):
        s = build_schedule(ScheduleConfig(kind=kind))
        t = s.t_of_log_snr(lam)
        assert torch.allclose(s.log_snr(t), lam, atol=1e-9)
        x_t = s.q_sample(x0, t, eps)
        outs.append(Precond(net, s, Parameterization(param)).forward(x_t, t).x0)
        ts.append(t)
    assert not torch.allclose(ts[0], ts[1], atol=1e-3)  # the times differ ...
    for o in outs[1:]:
        assert torch.allclose(o, outs[0], rtol=1e-9, atol=1e-9)  # ... the denoised images do not


def test_vp_networks_see_x_t_itself_and_ve_networks_unit_scale_inputs():
    seen = []
    spy = type("S", (torch.nn.Module,), {"forward": lambda self, x, n, c: seen.append(x) or torch.zeros_like(x)})()
    x_t = torch.randn(4, 2, dtype=T64) * 3
    t = torch.full((4,), 0.7, dtype=T64)
    Precond(spy, build_schedule(ScheduleConfig(kind="cosine")))(x_t, t)
    assert torch.allclose(seen[-1], x_t, rtol=1e-12)  # c_in y = x_t on a VP schedule
    ve = build_schedule(ScheduleConfig(kind="ve"))
    x = ve.q_sample(torch.zeros(4000, 2, dtype=T64), torch.full((4000,), 0.9, dtype=T64), torch.randn(4000, 2, dtype=T64))
    Precond(spy, ve)(x, torch.full((4000,), 0.9, dtype=T64))
    assert float(x.std()) > 10 and abs(float(seen[-1].std()) - 1) < 0.05  # the first layer never sees scale ~50


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_a_step_hook_projecting_onto_known_values_keeps_them_exactly(name):
    """The hook replaces the known coordinate after every step (noised to the step's level) and at the end: the
    sample holds it exactly, whatever the sampler."""
    s = build_schedule(ScheduleConfig(kind="cosine"))
    known, n = 0.8, 64
    z = torch.randn(n, dtype=T64, generator=torch.Generator().manual_seed(5))
    calls = []

    def project(i: int, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # x_s[:, 0] ~ q(x_s | x_0 = known)
        calls.append(i)
        x = x.clone()
        x[:, 0] = s.alpha(t) * known + s.sigma(t) * z
        return x

    spec = SAMPLERS[name]
    grid = make_grid("uniform", s, 2) if name == "rk45" else make_grid(spec.grid_for(s), s, spec.steps_for_nfe(name, 12))
    x = generate(MixtureDenoiser(eight_mode_ring(), s), (2,), n, s, grid, hook=project, sampler=spec.fn,
                 **({"rtol": 1e-3, "atol": 1e-3} if name == "rk45" else {}))
    assert torch.equal(x[:, 0], torch.full((n,), known, dtype=x.dtype)) and calls and torch.isfinite(x).all()


@pytest.mark.parametrize("name", ["ddim", "ancestral", "dpmpp_2m", "euler_maruyama", "edm"])
def test_a_start_at_t0_stays_closer_to_the_given_image_the_lower_t0(name):
    """SDEdit / image-to-image: noise the given points to t0 by the kernel, then sample from there."""
    s = build_schedule(ScheduleConfig(kind="linear"))
    gmm = eight_mode_ring()
    init = gmm.sample(400, torch.Generator().manual_seed(3))[0] + 0.3  # off the modes a little
    spec = SAMPLERS[name]
    dist = {}
    for t0 in (0.2, 0.5, 0.9):
        grid = make_grid(spec.grid_for(s), s, spec.steps_for_nfe(name, 21), t_start=t0)
        assert abs(float(grid[0]) - t0) < 1e-3
        x = generate(MixtureDenoiser(gmm, s), (2,), 400, s, grid, init=init, sampler=spec.fn)
        dist[t0] = float((x - init).norm(dim=1).mean())
    assert dist[0.2] < dist[0.5] < dist[0.9], dist


def test_the_nfe_is_counted_once_per_network_call_through_transforms():
    s = build_schedule(ScheduleConfig(kind="linear"))
    den = CountingDenoiser(MixtureDenoiser(eight_mode_ring(), s))
    spec = SAMPLERS["heun"]
    generate(den, (2,), 5, s, make_grid("uniform", s, 6), sampler=spec.fn)
    assert den.nfe == spec.nfe(6) == 11


def test_condition_batch_operations_and_null_values():
    c = Condition.labels(torch.tensor([3, 1, 4]), 10)
    assert c.fields == (LABEL,) and len(c) == 3
    assert c.index(torch.tensor([2, 0]))[LABEL].tolist() == [4, 3]
    assert c.repeat(2)[LABEL].tolist() == [3, 1, 4, 3, 1, 4]
    assert c.cat(c.null())[LABEL].tolist() == [3, 1, 4, 10, 10, 10]  # the doubled batch of classifier-free guidance
    assert c.drop(torch.tensor([False, True, False]))[LABEL].tolist() == [3, 10, 4]
    with pytest.raises(UserError, match="class 12 is out of range.*0..9"):
        Condition.labels(torch.tensor([1, 12]), 10)
    with pytest.raises(UserError, match="takes no condition"):
        check_condition((), (LABEL,))


def test_condition_dropout_drops_at_the_configured_rate():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, n, cond):
            seen.append(cond[LABEL].clone())
            return torch.zeros_like(x)

    s = build_schedule(ScheduleConfig(kind="linear"))
    n, nc = 20000, 10
    batch = Batch(torch.zeros(n, 2), Condition.labels(torch.full((n,), 3), nc))
    for rate in (0.0, 0.25):
        obj = OBJECTIVES["simple"](s, Parameterization(), cond_dropout=rate, conditions=("label",))
        obj.loss(Spy(), batch, NoiseSource.for_indices(0, range(n), block=1))
        dropped = float((seen[-1] == nc).double().mean())
        assert set(seen[-1].tolist()) <= {3, nc}
        assert abs(dropped - rate) < 4 * (rate * (1 - rate) / n) ** 0.5 + 1e-12, (rate, dropped)


def test_edm_objective_draws_log_normal_noise_levels_and_weights_the_x0_error():
    """ln sigma~ ~ N(P_mean, P_std^2) inside the schedule's range; the loss of a zero network is lambda |x0|^2
    c_out^2-weighted as in EDM: lambda(s) |x0_hat - x0|^2 with lambda = (s^2 + sd^2) / (s sd)^2."""
    s = build_schedule(ScheduleConfig(kind="edm"))
    obj = OBJECTIVES["edm"](s, Parameterization("edm"))
    u = NoiseSource.for_indices(0, range(20000), block=1).rand()
    log_s = torch.log(torch.exp(-0.5 * s.log_snr(obj.times(u))))
    inside = (log_s > -5) & (log_s < 4)
    assert abs(float(log_s[inside].mean()) + 1.2) < 0.05 and abs(float(log_s[inside].std()) - 1.2) < 0.05
    gmm = GaussianMixture(torch.ones(1), torch.zeros(1, 2), 0.25 * torch.eye(2)[None])
    x0 = gmm.sample(4096, torch.Generator().manual_seed(0))[0].float()
    zero = type("Z", (torch.nn.Module,), {"forward": lambda self, x, n, c: torch.zeros_like(x)})()
    loss = obj.loss(zero, Batch(x0), NoiseSource.for_indices(1, range(4096), block=1))
    assert 0.5 < float(loss.mean()) < 2.0  # EDM's weighting makes every level's loss O(1) at initialisation


@pytest.mark.parametrize("name", ["ddim", "dpmpp_3m", "heun", "euler_maruyama"])
def test_a_transform_may_take_gradients_inside_a_no_grad_sampler(name):
    """Guidance and DPS need d/dx inside the sampler's torch.no_grad: a denoiser whose score is autograd of the
    diffused mixture's log-density samples exactly like the closed-form denoiser."""
    s = build_schedule(ScheduleConfig(kind="cosine"))
    gmm = eight_mode_ring()

    entered = []

    def autograd_score(x, t, cond=None):
        entered.append(torch.is_grad_enabled())
        alpha, sigma = s.alpha(t[:1]), s.sigma(t[:1])
        with torch.enable_grad():
            xx = x.detach().double().requires_grad_(True)
            (score,) = torch.autograd.grad(gmm.diffused(float(alpha), float(sigma)).log_prob(xx).sum(), xx)
            score = score.to(x.dtype)
        from difflab.prediction import Prediction, scales

        return Prediction.from_score(x, *scales(s, t, x), score)

    spec = SAMPLERS[name]
    grid = make_grid(spec.grid_for(s), s, spec.steps_for_nfe(name, 11))
    a = generate(autograd_score, (2,), 32, s, grid, sampler=spec.fn)
    b = generate(MixtureDenoiser(gmm, s), (2,), 32, s, grid, sampler=spec.fn)
    assert entered and not any(entered)  # called inside the sampler's no_grad ...
    assert (a - b).abs().max() < 3e-3  # ... and its gradients worked (float32 score route: ~1e-4 apart, 3M up to 2e-3)
