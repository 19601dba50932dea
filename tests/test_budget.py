"""Time budgets decided exactly: a clock that advances only with the work done (so many virtual seconds per example a
network evaluates) drives the real commands, and what they decide is checked against the rule, on any machine.

The rule (difflab/budget.py, train/loop.py): the work after training is estimated from timed evaluations and kept
back with a margin (reserve R = 1.3 x estimates + 3 s); training stops after the first step that reaches the
deadline (budget - R - the set-up before the first step); a budget that leaves under 5 % of itself to train is
refused."""
import json
import math

import numpy as np
import pytest
import torch

from difflab.budget import TAIL_FIXED_S, TAIL_MARGIN, Budget
from difflab.config import build_config
from difflab.data.build import build_dataset
from difflab.demo import DEMO, fit_demo
from difflab.nn.mlp import MLP
from difflab.nn.unet import UNet
from difflab.pipeline import Pipeline
from difflab.train.build import build_network
from difflab.train.checkpoint import read_meta
from difflab.train.loop import MIN_TRAIN_SHARE
from difflab.train.run import LoadedRun
from difflab.vae import HierarchicalVAE
from tests.proc import assert_one_line_error, in_process

PER_IMAGE = 1 / 16  # virtual seconds per example a network evaluates (a power of 2: sums stay exact)


class WorkClock:
    """Virtual seconds that pass only with work: PER_IMAGE for each example a diffusion network (or a VAE, in
    training) evaluates, three times that when it also trains on it (forward and backward); nothing else takes time."""

    def __init__(self, per_image: float = PER_IMAGE):
        self.now, self.per_image = 0.0, per_image

    def __call__(self) -> float:
        return self.now

    def __enter__(self) -> "WorkClock":
        self._hook = torch.nn.modules.module.register_module_forward_hook(self._count)
        return self

    def __exit__(self, *exc) -> None:
        self._hook.remove()

    def _count(self, module, args, output) -> None:
        if isinstance(module, (UNet, MLP, HierarchicalVAE)):
            self.now += self.per_image * len(args[0]) * (3 if torch.is_grad_enabled() else 1)


# 2-D points, an MLP, batches of 32 (a training step: 3 x 32 x 1/16 = 6 s); then 64 samples by DDIM in one batch
# of 64 at 20 evaluations (the estimate: 64 x 20 / 16 = 80 s; its timing: 4 evaluations = 16 s)
BATCH, SAMPLES, NFE = 32, 64, 20
TOY = ["--data", "gmm", "--set", "arch=mlp", "--set", "mlp.hidden=32", "--set", "data.num_points=2048",
       "--set", f"train.batch_size={BATCH}", "--set", "train.log_every=1", "--max-images", "1000000",
       "--set", "sample.sampler=ddim", "--set", f"sample.steps={NFE}", "--set", f"sample.num_samples={SAMPLES}",
       "--set", f"sample.batch_size={SAMPLES}", "--quiet"]
STEP_S = 3 * BATCH * PER_IMAGE
SAMPLE_S = SAMPLES * NFE * PER_IMAGE
TIMING_S = 4 * SAMPLES * PER_IMAGE  # sample_to plans again: one warm-up and three timed evaluations
RESERVE_S = TAIL_MARGIN * SAMPLE_S + TAIL_FIXED_S
TINY_UNET = ["--set", "unet.base_channels=8", "--set", "unet.channel_mult=[1,2]", "--set", "unet.attention_levels=[1]"]


def test_a_budget_adds_up_its_phases_on_its_own_clock():
    now = [10.0]
    b = Budget(60, clock=lambda: now[0])
    now[0] += 2
    with b.phase("training"):
        now[0] += 30
    with pytest.raises(RuntimeError), b.phase("sampling"):  # a phase that fails still counts
        now[0] += 5
        raise RuntimeError
    now[0] += 1
    assert b.elapsed() == 38 and b.summary() == {"training": 30, "sampling": 5, "other": 3, "total": 38, "budget": 60}
    assert b.line() == "time: 38 s of a 60 s budget (training 30 s, sampling 5 s, other 3 s)"


@pytest.mark.parametrize("minutes", [5, 5.05])
def test_training_stops_at_the_first_step_past_its_deadline_so_the_samples_fit(tmp_path, minutes):
    with WorkClock() as clock:
        p = in_process("train", *TOY, "--minutes", str(minutes), "--out", "r", cwd=tmp_path, clock=clock)
    assert p.returncode == 0, p.stderr
    run = tmp_path / "r"
    s = json.loads((run / "summary.json").read_text())
    virtual, steps = s["seconds"], s["steps"]  # seconds of the WorkClock, not of the machine
    assert s["stopped_by"] == "time" and virtual["budget"] == minutes * 60 and virtual["total"] == clock.now
    assert virtual["training"] == steps * STEP_S  # the training phase is its steps: nothing else costs there
    assert virtual["sampling"] == TIMING_S + SAMPLE_S  # the samples cost what was estimated (and their own timing)
    # stopped at the first step past the deadline D = budget - R - set-up: budget - total = R - sampling - (steps
    # x step - D), with 0 <= steps x step - D < one step; a rule that forgot the reserve or the set-up overruns
    slack = virtual["budget"] - virtual["total"]
    assert RESERVE_S - virtual["sampling"] - STEP_S < slack <= RESERVE_S - virtual["sampling"] + 1e-9, (slack, virtual)
    # the command's own account agrees with its files
    assert read_meta(run / "checkpoint.safetensors")["step"] == steps == json.loads(
        (run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert np.load(run / "samples.npz")["samples"].shape == (SAMPLES, 2)


def test_a_budget_that_leaves_too_little_to_train_is_refused_at_its_threshold(tmp_path):
    # before training: the samples' estimate timed (16 s) and a training step's (4 evaluations of 32: 8 s)
    setup = TIMING_S + 4 * BATCH * PER_IMAGE
    threshold = (RESERVE_S + setup) / (1 - MIN_TRAIN_SHARE)  # seconds: 137.9
    below, above = math.floor(threshold / 6) / 10, math.ceil(threshold / 6) / 10  # minutes: 2.2, 2.3
    with WorkClock() as clock:
        p = in_process("train", *TOY, "--minutes", str(below), "--out", "no", cwd=tmp_path, clock=clock)
    assert_one_line_error(p, "too little to train", "kept for the 64 samples after training", "--sample 0",
                          "of a 2.2-minute budget", "pass --minutes")
    assert not (tmp_path / "no" / "checkpoint.safetensors").exists()
    with WorkClock() as clock:
        p = in_process("train", *TOY, "--minutes", str(above), "--out", "yes", cwd=tmp_path, clock=clock)
    assert p.returncode == 0, p.stderr
    deadline = above * 60 - RESERVE_S - setup
    assert json.loads((tmp_path / "yes" / "summary.json").read_text())["steps"] == math.ceil(deadline / STEP_S)


def test_the_demo_shrinks_its_samples_and_bound_to_their_shares_of_the_budget():
    """fit_demo on an untrained network like the demo's (smaller: the virtual cost is per example): 64 samples x 250
    ancestral steps at 64 / 16 s an evaluation (1000 s), the bound 2 x 34 evaluations of 64 test images a batch
    (272 s a batch)."""
    cfg = build_config(base=DEMO, overrides=["data.limit=64", "data.image_size=8", *TINY_UNET[1::2]])
    net = build_network(cfg).eval()
    spec = build_dataset(cfg.data).spec
    sample_s, batch_s = 64 * 250 * PER_IMAGE, 2 * 34 * 64 * PER_IMAGE
    with WorkClock() as clock:
        pipe = Pipeline(LoadedRun(cfg, net, net, 0, 0, spec), clock=clock)
        for minutes, steps, images in ((125, 250, 256), (60, 225, 64), (10, 37, 16), (2, 25, 16)):
            budget_s = minutes * 60
            fit = fit_demo(pipe, cfg.sample, budget_s, log=lambda s: None)
            assert steps == max(25, min(250, int(250 * 0.25 * budget_s / sample_s)))  # the rule, spelled out
            assert images == max(16, min(256, int(0.15 * budget_s / batch_s) * 64))
            assert (fit.sample.steps, fit.nll_images) == (steps, images), minutes
            assert fit.estimates == (64 * steps * PER_IMAGE, -(-images // 64) * batch_s)
            assert len(fit.cuts) == (steps < 250) + (images < 256)


def test_the_demo_command_fits_its_budget_with_every_figure_and_the_report(tmp_path):
    with WorkClock() as clock:
        p = in_process("demo", "--out", "d", "--minutes", "10", "--threads", "1", "--recipe", "pixel", *TINY_UNET,
                       "--set", "data.limit=512", "--set", "data.image_size=14", "--set", "schedule.T=50", "--set",
                       "sample.steps=50", "--set", "sample.num_samples=4", cwd=tmp_path, clock=clock)
    assert p.returncode == 0, p.stderr
    d = tmp_path / "d"
    for f in ("samples.png", "forward.png", "reverse.png", "loss.png", "report.md", "checkpoint.safetensors"):
        assert (d / f).is_file(), f
    report = (d / "report.md").read_text()
    assert "samples.png" in report and "training" in report and "bits/dim" in report
    assert "Where the time went" in report and "Too short to mean much" in report
    # the bound (2 x 34 evaluations of 64 images = 272 s a batch) fits 15 % of 600 s on no full batch: 16 images
    assert "to fit --minutes 10: the bound on 16 instead of 256 test images" in p.stdout
    s = json.loads((d / "summary.json").read_text())
    virtual = s["seconds"]  # seconds of the WorkClock, not of the machine
    assert s["stopped_by"] == "time" and virtual["total"] <= virtual["budget"] == 600 and virtual["evaluation"] > 0
    assert virtual["training"] == s["steps"] * 3 * 64 * PER_IMAGE
    assert np.load(d / "samples.npz")["images"].shape == (4, 14, 14)
    p = in_process("eval", "nll", "--checkpoint", "d", "--num-images", "4", "--num-t", "4", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "L_0" in p.stdout and "L_T" in p.stdout and "bits/dim" in p.stdout
    total = [ln for ln in p.stdout.splitlines() if ln.startswith("total")][0]
    assert 0 < float(total.split()[2]) < 20  # bits/dim of an 8-bit image under a barely trained model


def test_the_latent_demo_trains_its_autoencoder_for_a_quarter_of_the_budget_then_diffusion_on_its_latents(tmp_path):
    """--recipe latent: stage 1, the VAE until 25 % of the budget (a step of 64 examples: 12 virtual seconds); stage
    2, a U-Net on its 4 x 7 x 7 latents in what is left; the samples decoded to 28 x 28 digits."""
    with WorkClock() as clock:
        p = in_process("demo", "--out", "d", "--minutes", "10", "--threads", "1", "--recipe", "latent", "--set",
                       "unet.base_channels=8", "--set", "data.limit=512", "--set", "schedule.T=50", "--set",
                       "sample.nfe=6", "--set", "sample.num_samples=4", cwd=tmp_path, clock=clock)
    assert p.returncode == 0, p.stderr
    d = tmp_path / "d"
    for f in ("samples.png", "forward.png", "reverse.png", "loss.png", "report.md", "checkpoint.safetensors",
              "autoencoder/checkpoint.safetensors", "autoencoder/report.md", "autoencoder/recon.png"):
        assert (d / f).is_file(), f
    assert "stage 1 of 2" in p.stdout and "stage 2 of 2" in p.stdout
    ae_steps = json.loads((d / "autoencoder" / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert ae_steps == math.ceil(0.25 * 600 / (3 * 64 * PER_IMAGE))  # the first step to reach 150 s: 13
    s = json.loads((d / "summary.json").read_text())
    virtual = s["seconds"]
    assert virtual["autoencoder"] == ae_steps * 3 * 64 * PER_IMAGE + 256 * PER_IMAGE  # + the report's 256 images
    assert s["stopped_by"] == "time" and virtual["total"] <= virtual["budget"] == 600
    assert read_meta(d / "checkpoint.safetensors")["config"]["data"]["latent"] == str((d / "autoencoder").resolve())
    report = (d / "report.md").read_text()
    assert "latent diffusion on MNIST" in report and "4x7x7 latents of a VAE" in report and "dpmpp_3m" in report
    assert np.load(d / "samples.npz")["images"].shape == (4, 28, 28)


def test_the_demo_picks_latent_diffusion_where_the_machine_has_no_native_bf16(monkeypatch):
    """An AVX2 CPU trains in fp32 (~3x slower a step than native bf16): the latent recipe, said in the log; a machine
    with native bf16 keeps Algorithm 2 on the pixels; an explicit recipe wins; an unknown one is refused."""
    import difflab.demo as demo
    from difflab.errors import UserError

    said = []
    monkeypatch.setattr(demo, "resolve_precision", lambda p, d: "fp32")
    assert demo.pick_recipe("auto", said.append) == "latent"
    assert "no native bf16" in said[0] and "--recipe pixel" in said[0]
    assert demo.pick_recipe("pixel", said.append) == "pixel" and len(said) == 1
    monkeypatch.setattr(demo, "resolve_precision", lambda p, d: "bf16")
    assert demo.pick_recipe("auto", said.append) == "pixel" and len(said) == 1
    assert demo.pick_recipe("latent", said.append) == "latent"
    with pytest.raises(UserError, match="--recipe must be one of auto, pixel, latent"):
        demo.pick_recipe("fast")
