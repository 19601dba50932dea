"""The "to add X, write this one file" table of docs/architecture.md, proved: each new thing below is defined in this
file alone, with no edit under src/, and works through the library's own paths.

- a condition kind (a scalar stroke thickness read from the data) trains a model, samples with it and with
  classifier-free guidance on it;
- a linear operator (every second row observed) restores through the Python API with its own baseline beside TV;
- an objective class (min-SNR weighting) trains;
- a sampler (Euler on the probability-flow ODE) runs through Pipeline with its cost counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

import difflab
from difflab.condition import ConditionKind, register_kind
from difflab.config import build_config
from difflab.data.build import build_dataset
from difflab.data.dataset import DataConfig
from difflab.inverse.metrics import quality
from difflab.inverse.restore import posterior_sample
from difflab.losses.objective import DiffusionObjective, register_objective
from difflab.operators import Operator
from difflab.precond import sigma_tilde
from difflab.samplers.registry import SAMPLERS, SamplerSpec, register_sampler
from difflab.samplers.walk import evaluate, intervals
from difflab.train.loop import train
from difflab.utils import bcast

TINY = {"data": {"name": "mnist", "image_size": 8, "limit": 4096},
        "unet": {"base_channels": 16, "channel_mult": [1, 2], "attention_levels": []},
        "train": {"batch_size": 64, "lr": 2e-3, "warmup_images": 0, "ema_half_life_images": 2000, "log_every": 50,
                  "checkpoint_every_images": 10**9, "tensorboard": False}}


def tiny(steps: int, **sections) -> dict:
    base = {k: dict(v) for k, v in TINY.items()}
    base["train"]["max_images"] = 64 * steps
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base


# -- a condition kind ---------------------------------------------------------------------------------------------
class ScalarEmbedding(nn.Module):
    """(B,) scalars -> (B, dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, v: Tensor) -> Tensor:
        return self.net(v.float()[:, None] * 10)


@register_kind
@dataclass(frozen=True)
class Thickness(ConditionKind):
    """Stroke thickness: the image's mean ink in [0, 1], read from each example; null = -1."""

    name = "thickness"

    def module(self, dim: int) -> nn.Module:
        return ScalarEmbedding(dim)

    def null(self, shape: tuple[int, ...]) -> Tensor:
        return torch.tensor(-1.0)

    def reader(self, data):
        ink = ((data.x + 1) / 2).flatten(1).mean(1)  # (N,)
        return lambda idx: ink[idx]


def ink(x: Tensor) -> Tensor:
    return ((x.clamp(-1, 1) + 1) / 2).flatten(1).mean(1)


def test_a_condition_kind_defined_here_trains_samples_and_guides(tmp_path):
    run = tmp_path / "thick"
    cfg = build_config(base=tiny(300, conditions=["thickness"], train={"cond_dropout": 0.2}))
    data = build_dataset(cfg.data)
    train(cfg, data, run, progress=False, log=lambda s: None)
    pipe = difflab.load(run)
    assert pipe.net.conditions == ("thickness",) and any(k.startswith("embed.thickness.") for k in pipe.net.state_dict())
    kind = Thickness()
    thin, thick = torch.quantile(ink(data.x), torch.tensor([0.1, 0.9])).tolist()
    n = 64
    values = torch.tensor([thin] * n + [thick] * n)
    x = pipe.sample(2 * n, cond=kind.condition(values, pipe.shape), nfe=10, seed=0)
    gap = float(ink(x[n:]).mean() - ink(x[:n]).mean())
    assert gap > 0.25 * (thick - thin), (gap, thick - thin)  # the condition steers the stroke thickness (0.6x)
    guided = pipe.sample(2 * n, cond=kind.condition(values, pipe.shape), guidance=3.0, nfe=10, seed=0)
    assert float(ink(guided[n:]).mean() - ink(guided[:n]).mean()) > 1.5 * gap  # guidance sharpens it (2.8x)
    asked_nothing = pipe.condition(pipe.sample_config(4))  # no request: the kind's null rows (unconditional model)
    assert asked_nothing.fields == ("thickness",) and torch.equal(asked_nothing["thickness"], torch.full((4,), -1.0))


# -- a linear operator ----------------------------------------------------------------------------------------------
class EveryOtherRow(Operator):
    """A = the even rows of the image; A^T zero-fills the odd rows; A^+ = A^T."""

    name = "row sampling"

    def forward(self, x: Tensor) -> Tensor:
        return x[..., ::2, :]

    def adjoint(self, y: Tensor) -> Tensor:
        x = y.new_zeros(len(y), *self.shape)
        x[..., ::2, :] = y
        return x

    pinv = adjoint

    def classical(self, y: Tensor) -> dict[str, Tensor]:
        """Each missing row the mean of its neighbours (the last one repeats the row above)."""
        x = self.adjoint(y)
        below = torch.cat([y[..., 1:, :], y[..., -1:, :]], dim=-2)[..., : x[..., 1::2, :].shape[-2], :]
        x[..., 1::2, :] = (y[..., : below.shape[-2], :] + below) / 2
        return {"row interpolation": x}


def test_an_operator_defined_here_restores_through_the_python_api_with_its_own_baseline():
    run = difflab_run()
    pipe = difflab.load(run)
    op = EveryOtherRow(pipe.shape)
    a, b = torch.randn(3, *pipe.shape), torch.randn(3, *op.forward(torch.zeros(1, *pipe.shape)).shape[1:])
    torch.testing.assert_close((op.forward(a) * b).sum(), (a * op.adjoint(b)).sum())  # <A a, b> = <a, A^T b>
    truth = build_dataset(DataConfig(name="mnist", split="test", image_size=8, limit=16)).x
    y = op.measure(truth)
    base = op.baselines(y)
    assert list(base) == ["row interpolation", "TV"]
    restored = posterior_sample(pipe, op, y, "project", nfe=10, seed=0)
    assert float(op.consistency(restored, y).max()) < 1e-5  # the measured rows are kept exactly
    psnr = {name: float(quality(x, truth)[0].mean()) for name, x in {**base, "zero-filled": op.adjoint(y),
                                                                     "diffusion": restored}.items()}
    assert psnr["row interpolation"] > psnr["zero-filled"] + 3 and psnr["diffusion"] > psnr["zero-filled"] + 3, psnr
    assert op.view(y).shape == truth.shape  # the figure's measurement row, by the base class's default view


# -- an objective --------------------------------------------------------------------------------------------------
@register_objective
class MinSNR(DiffusionObjective):
    """Min-SNR-gamma weighting (Hang et al. 2023) of the x0 error: min(SNR, gamma) |x0_hat - x0|^2, gamma = 5."""

    name = "min_snr_test"

    def weigh(self, pred, x0: Tensor, t: Tensor, err: Tensor) -> Tensor:
        snr = sigma_tilde(self.schedule, t).pow(-2)
        return snr.clamp(max=5.0).to(x0) * (pred.x0 - x0).pow(2).flatten(1).mean(1)


def test_an_objective_defined_here_trains(tmp_path):
    cfg = build_config(base=tiny(120, train={"objective": "min_snr_test"}))
    train(cfg, build_dataset(cfg.data), tmp_path / "min_snr", progress=False, log=lambda s: None)
    pipe = difflab.load(tmp_path / "min_snr")
    assert pipe.cfg.train.objective == "min_snr_test"
    first, last = read_losses(tmp_path / "min_snr")
    assert last < 0.7 * first, (first, last)  # it trains: the weighted x0 error falls


def read_losses(run) -> tuple[float, float]:
    import json

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    return sum(losses[:2]) / 2, sum(losses[-2:]) / 2


# -- a sampler -----------------------------------------------------------------------------------------------------
CALLS = {"n": 0}


@torch.no_grad()
def sample_euler_flow(denoiser, x, schedule, grid, *, noise=None, cond=None, hook=None, callback=None):
    """Euler on the probability-flow ODE in (alpha, sigma): x_s = alpha_s x0_hat + sigma_s eps_hat."""
    for i, t, s in intervals(grid):
        pred = evaluate(denoiser, x, t, cond, callback, i)
        CALLS["n"] += 1
        x = bcast(schedule.alpha(s), x) * pred.x0 + bcast(schedule.sigma(s), x) * pred.eps
    return x


@pytest.fixture
def euler_flow():
    register_sampler("euler_flow_test", SamplerSpec(sample_euler_flow, False, lambda o: 1, "uniform",
                                                    "Euler on the probability-flow ODE", 20))
    yield "euler_flow_test"
    SAMPLERS.pop("euler_flow_test")


def test_a_sampler_defined_here_runs_through_the_pipeline_with_its_cost_counted(euler_flow):
    pipe = difflab.load(difflab_run())
    plan = pipe.plan(pipe.sample_config(8, sampler=euler_flow, nfe=12), log=lambda s: None)
    assert plan.nfe == 12 and len(plan.grid) == 13 and "euler_flow_test" in plan.describe()
    CALLS["n"] = 0
    x = pipe.draw(plan)
    assert CALLS["n"] == 12 and x.shape == (8, *pipe.shape)  # the cost the registry entry predicted
    same = pipe.sample(8, sampler=euler_flow, nfe=12, seed=plan.config.seed)
    torch.testing.assert_close(same, x)  # deterministic: the same noise streams, the same samples
    ddim = pipe.sample(8, sampler="ddim", nfe=12, grid="uniform", seed=plan.config.seed)
    torch.testing.assert_close(x, ddim, atol=1e-4, rtol=0)  # eta = 0 DDIM is this Euler step exactly


def difflab_run():
    from tests.runs import trained_run

    return trained_run(tiny(300))
