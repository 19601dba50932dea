"""Algorithm 1: index ranges, determinism, checkpoints, resume, EMA, and an end-to-end 2-D run."""
import json

import pytest
import torch

from difflab.config import build_config
from difflab.data.build import build_dataset
from difflab.errors import UserError
from difflab.losses.simple import sample_steps, simple_loss
from difflab.losses.objective import DiffusionObjective
from difflab.precond import PARAMETERIZATIONS, Parameterization, Precond
from difflab.samplers.generate import generate
from difflab.schedules import DiscreteSchedule, linear_betas
from difflab.schedules.grids import discrete_grid
from difflab.train import loop
from difflab.train.build import build_denoiser
from difflab.train.ema import ema_beta
from difflab.train.run import load_run

TOY = {"arch": "mlp", "data": {"name": "gmm", "num_points": 4096}, "mlp": {"hidden": 64, "depth": 2},
       "train": {"batch_size": 64, "max_images": 64 * 40, "lr": 1e-3, "warmup_images": 256, "log_every": 5,
                 "ema_half_life_images": 50_000,
                 "checkpoint_every_images": 64 * 20}}


def test_t_covers_1_to_T_inclusive():
    t = sample_steps(200_000, 1000, torch.Generator().manual_seed(0))
    assert t.min().item() == 1 and t.max().item() == 1000
    assert len(t.unique()) == 1000


def test_training_feeds_every_t_including_T(monkeypatch):
    """The loop trains at t/T for t = 1..T: t = T must appear, t = 0 must not."""
    seen = []
    real = DiffusionObjective.times

    def spy(self, u):
        seen.append(real(self, u))
        return seen[-1]

    monkeypatch.setattr(DiffusionObjective, "times", spy)
    cfg = build_config(base={**TOY, "schedule": {"T": 4}, "train": {**TOY["train"], "max_images": 64 * 20}})
    data = build_dataset(cfg.data)
    loop.train(cfg, data, _tmp(), progress=False, log=lambda s: None)
    assert sorted(set((torch.cat(seen) * 4).tolist())) == [1, 2, 3, 4]


def _tmp():
    import tempfile

    return tempfile.mkdtemp()


@pytest.mark.parametrize("p", PARAMETERIZATIONS)
def test_simple_loss_is_zero_for_the_truth_and_eps_loss_is_algorithm_1(p):
    sched = DiscreteSchedule(linear_betas(1000))
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)
    t = sample_steps(8, 1000, g).double() / 1000
    a, s = sched.alpha(t).float()[:, None], sched.sigma(t).float()[:, None]
    st, sd = s / a, 0.5  # EDM's sigma~ and sigma_data: x0 = c_skip (x_t / a) + c_out F (EDM eq. 7, table 1)
    c_skip, c_out = sd**2 / (st**2 + sd**2), st * sd / (st**2 + sd**2).sqrt()
    targets = {"eps": eps, "x0": x0, "score": -eps / s, "v": a * eps - s * x0,
               "edm": (x0 - c_skip * (a * x0 + s * eps) / a) / c_out}
    oracle = type("O", (torch.nn.Module,), {"forward": lambda self, x, n, c: targets[p]})()
    loss = simple_loss(Precond(oracle, sched, Parameterization(p)), x0, t, eps)
    assert loss.abs().max() < (1e-8 if p != "edm" else 1e-6)  # edm's target carries float32 rounding of y
    zero = type("Z", (torch.nn.Module,), {"forward": lambda self, x, n, c: torch.zeros_like(x)})()
    if p == "eps":
        assert torch.allclose(simple_loss(Precond(zero, sched), x0, t, eps), eps.pow(2).mean(1))


def test_ema_half_life_is_counted_in_images():
    # after H images the old weights' influence halves, whatever the batch size
    for b in (8, 64, 512):
        assert ema_beta(b, 4096) ** (4096 / b) == pytest.approx(0.5)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    cfg = build_config(base=TOY)
    loop.train(cfg, build_dataset(cfg.data), tmp_path, progress=False, log=lambda s: None)
    run = load_run(tmp_path)
    st = loop.new_state(cfg)
    x, t = torch.randn(16, 2), torch.rand(16)
    assert run.step == 40 and run.images == 64 * 40
    # reload twice: same outputs; and differs from a fresh network
    again = load_run(tmp_path / "checkpoint.safetensors")
    for a, b in ((run.net, again.net), (run.ema, again.ema)):
        assert torch.equal(a(x, t), b(x, t))
    assert not torch.equal(run.net(x, t), st.net(x, t))
    assert not torch.equal(run.net(x, t), run.ema(x, t))  # EMA is its own copy


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    cfg = build_config(base=TOY)
    data = build_dataset(cfg.data)
    quiet = dict(progress=False, log=lambda s: None)
    loop.train(cfg, data, tmp_path / "full", **quiet)
    half = build_config(base={**TOY, "train": {**TOY["train"], "max_images": 64 * 17}})
    loop.train(half, data, tmp_path / "split", **quiet)
    loop.train(cfg, data, tmp_path / "split", resume=True, **quiet)
    a, b = load_run(tmp_path / "full"), load_run(tmp_path / "split")
    for k, v in a.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k]), k
    for k, v in a.ema.state_dict().items():
        assert torch.equal(v, b.ema.state_dict()[k]), k
    def metrics(run):  # every logged number except wall-clock seconds
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(ln).items() if k != "seconds"} for ln in lines]

    assert metrics("split") == metrics("full") and len(metrics("split")) == 9  # steps 1, 5, 10, ..., 40


def test_data_that_does_not_fit_the_model_is_refused_before_writing(tmp_path):
    cfg = build_config(base={"arch": "unet", "data": {"name": "gmm"}})
    with pytest.raises(UserError, match="images"):
        loop.train(cfg, build_dataset(cfg.data), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    cfg = build_config(base={"arch": "unet", "data": {"name": "mnist", "limit": 8, "image_size": 30}})
    with pytest.raises(UserError, match="divisible"):
        loop.train(cfg, build_dataset(cfg.data), tmp_path / "out", progress=False)


def test_learned_variance_trains_through_the_bound_and_samples(tmp_path):
    base = {**TOY, "train": {**TOY["train"], "objective": "hybrid", "learn_variance": True}}
    cfg = build_config(base=base)
    assert cfg.variance == "learned"
    loop.train(cfg, build_dataset(cfg.data), tmp_path, progress=False, log=lambda s: None)
    run = load_run(tmp_path)
    den = build_denoiser(cfg, run.ema)
    pred = den(torch.randn(8, 2), torch.full((8,), 0.5))
    assert pred.var_frac is not None and pred.var_frac.shape == (8, 2)
    x = generate(den, (2,), 16, den.schedule, discrete_grid(1000, 20), seed=0, variance="learned")
    assert torch.isfinite(x).all()
    fixed = build_config(base=TOY)
    with pytest.raises(UserError, match="learn_variance"):
        build_config(base={**TOY, "sample": {"variance": "learned"}})
    assert fixed.variance == "posterior"
