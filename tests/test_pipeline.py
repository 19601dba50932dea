"""The user's path: difflab.load and the pipeline the CLI shares, defaults that are fast, budgets that hold,
Ctrl-C that leaves metrics, plot and checkpoint at one step, messages that name the flag typed."""
import json
import math
import signal
import subprocess

import numpy as np
import pytest
import torch

import difflab
from difflab.config import RunConfig, SampleConfig
from difflab.data.build import build_dataset
from difflab.data.dataset import DataConfig, to_uint8
from difflab.errors import UserError
from difflab.train.checkpoint import read_meta
from difflab.train.notes import ema_initial_share, short_run_notes
from tests.proc import assert_one_line_error, command, difflab as run_cli, env, wait_for_step

# a real U-Net on MNIST at 14 x 14: a step takes a few ms
TINY = ["--data", "mnist", "--set", "data.limit=256", "--set", "data.image_size=14", "--set", "unet.base_channels=8",
        "--set", "unet.channel_mult=[1,2]", "--set", "unet.attention_levels=[1]", "--set", "train.batch_size=32",
        "--set", "schedule.T=100", "--set", "train.log_every=4"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny trained MNIST run, trained with the CLI's default sampling after training, on a real time budget
    ample for its 16 steps (time budgets decided exactly: test_budget.py)."""
    cwd = tmp_path_factory.mktemp("pipe")
    p = run_cli("train", *TINY, "--max-images", "512", "--minutes", "10", "--sample", "8", "--out", "run", cwd=cwd)
    assert p.returncode == 0, p.stderr
    return cwd, p


def test_train_samples_after_training_with_a_fast_sampler_not_T_steps(tiny_run):
    cwd, p = tiny_run
    # the cost is printed before the samples are drawn, and it is the fast default, not T = 100 ancestral steps
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("drawing"))
    assert "dpmpp_3m (the most accurate at this NFE; --sampler NAME to choose), 20 network evaluations" in line, line
    assert p.stdout.index("drawing") < p.stdout.index("wrote 8 samples")
    assert np.load(cwd / "run" / "samples.npz")["images"].shape == (8, 14, 14)
    summary = json.loads((cwd / "run" / "summary.json").read_text())
    assert set(summary["seconds"]) >= {"training", "sampling", "total"} and summary["seconds"]["budget"] == 600
    # what holds on any machine: the command's account agrees with its files (16 steps unless the time ran out)
    steps = read_meta(cwd / "run" / "checkpoint.safetensors")["step"]
    last = json.loads((cwd / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert summary["steps"] == steps == last["step"] and summary["images_seen"] == 32 * steps == last["images"]
    assert (summary["stopped_by"], steps) == ("images", 16) or summary["stopped_by"] == "time"
    assert any("training steps" in n for n in summary["notes"])  # 16 steps: said to be too short


def test_the_pipeline_equals_the_cli_and_stays_in_range(tiny_run):
    cwd, _ = tiny_run
    pipe = difflab.load(cwd / "run")
    assert pipe.shape == (1, 14, 14)
    for sampler, nfe in (("dpmpp_3m", 6), ("ddim", 5)):
        x = pipe.sample(6, sampler=sampler, nfe=nfe, seed=3)
        assert x.shape == (6, 1, 14, 14) and x.min() >= -1 and x.max() <= 1
        p = run_cli("sample", "--run", "run", "--num", "6", "--sampler", sampler, "--nfe", str(nfe), "--seed", "3",
                    "--name", sampler, "--quiet", cwd=cwd)
        assert p.returncode == 0, p.stderr
        assert np.array_equal(np.load(cwd / "run" / f"{sampler}.npz")["images"], to_uint8(x)[:, 0])
    # unclipped samples leave [-1, 1] on an untrained network; the clipped ones above did not
    assert pipe.sample(6, nfe=6, seed=3, clip=False).abs().max() > 1
    # a condition-free run refuses labels in one line
    with pytest.raises(UserError, match="condition"):
        pipe.sample(2, classes=[1])


def test_pipeline_likelihood_equals_the_cli_evaluation(tiny_run):
    from difflab.eval.likelihood import evaluate_ode_nll, per_image_terms

    cwd, _ = tiny_run
    pipe = difflab.load(cwd / "run")
    x = build_dataset(DataConfig(name="mnist", split="test", limit=4, image_size=14)).x[:4]
    ode = pipe.log_likelihood(x, method="ode", rtol=1e-3)
    rep = evaluate_ode_nll(pipe.run, num_images=4, rtol=1e-3, atol=1e-3, log=lambda s: None, progress=False)
    assert ode.shape == (4,) and math.isclose(-ode.mean().item(), rep.nats, rel_tol=1e-4)
    elbo = pipe.log_likelihood(x, method="elbo")  # all T terms
    L0, Lt, LT, *_ = per_image_terms(pipe.run, num_images=4, method="exact", log=lambda s: None, progress=False)
    assert torch.allclose(elbo, -(L0 + Lt + LT), rtol=1e-5)
    assert (pipe.log_likelihood(x, method="elbo", num_t=8).shape == (4,))


def test_sampler_default_budgets_and_nfe_zero():
    pipe_cfg = RunConfig()
    from difflab.samplers.registry import get_sampler
    from difflab.train.build import build_schedule

    sched = build_schedule(pipe_cfg)
    assert pipe_cfg.sample.sampler == "auto" and pipe_cfg.sample.nfe is None
    assert get_sampler("dpmpp_3m").default_steps("dpmpp_3m", sched) == 20  # 20 NFE, not T = 1000
    assert get_sampler("edm").nfe(get_sampler("edm").default_steps("edm", sched)) == 35
    assert get_sampler("ancestral").default_steps("ancestral", sched) == 1000  # Algorithm 2 as written
    for bad in ({"nfe": 0}, {"steps": 0}, {"nfe": 10, "steps": 10}):
        with pytest.raises(UserError):
            SampleConfig(**bad)


def test_an_nfe_without_a_sampler_picks_the_most_accurate_one(tiny_run):
    """--nfe alone: DPM-Solver++ PC at <= 10 NFE, 3M above (bench/default_grids.py); a named sampler is kept."""
    from difflab.samplers.registry import auto_sampler

    cwd, _ = tiny_run
    pipe = difflab.load(cwd / "run")
    assert [auto_sampler(n) for n in (2, 5, 10, 11, 20, 1000)] == ["dpmpp_pc"] * 3 + ["dpmpp_3m"] * 3
    for nfe, name in ((6, "dpmpp_pc"), (30, "dpmpp_3m")):
        plan = pipe.plan(pipe.sample_config(4, nfe=nfe))
        assert plan.config.sampler == name and plan.chosen and plan.nfe == nfe and plan.grid_name == "focus"
        assert f"with {name} (the most accurate at this NFE" in plan.describe()
    plan = pipe.plan(pipe.sample_config(4, nfe=6, sampler="edm"))
    assert plan.config.sampler == "edm" and not plan.chosen and plan.nfe == 5 and plan.grid_name == "stable"
    p = run_cli("sample", "--run", "run", "--num", "2", "--nfe", "7", "--name", "auto", cwd=cwd)
    assert p.returncode == 0 and "with dpmpp_pc (the most accurate at this NFE" in p.stdout, p.stdout + p.stderr


def test_nfe_zero_and_flags_named_as_typed(tiny_run, tmp_path):
    cwd, _ = tiny_run
    assert_one_line_error(run_cli("sample", "--run", "run", "--nfe", "0", cwd=cwd), "--nfe", "positive")
    assert_one_line_error(run_cli("train", "--data", "folder", "--data-path", "nowhere", "--out", "x", cwd=tmp_path),
                          "nowhere")
    p = run_cli("train", "--data", "mnist", "--data-path", "some.npz", "--out", "x", cwd=tmp_path)
    assert_one_line_error(p, "--data-path")
    assert "data.path" not in p.stderr
    assert_one_line_error(run_cli("train", "--set", "unet.channel_mult=2", "--out", "x", cwd=tmp_path), "[1,2]")


def test_short_run_notes_and_the_ema_share():
    cfg = RunConfig()
    tc = {"ema_rampup": 0.0, "ema_half_life_images": 6400, "warmup_images": 1000, "batch_size": 64}
    from dataclasses import replace

    cfg = replace(cfg, train=replace(cfg.train, **tc))
    # without ramp-up the initial weights keep 0.5 ** (images / half-life) exactly
    assert math.isclose(ema_initial_share(cfg, 6400), 0.5, rel_tol=1e-12)
    assert math.isclose(ema_initial_share(cfg, 12800), 0.25, rel_tol=1e-12)
    notes = short_run_notes(cfg, steps=10, images=640, is_image=True)
    assert len(notes) == 3 and "warm-up" in notes[0] and "EMA" in notes[1] and "steps" in notes[2]
    assert short_run_notes(cfg, steps=5000, images=320_000, is_image=True) == []
    few_images = short_run_notes(cfg, steps=1200, images=38_400, is_image=True)  # batch 32: steps, but few images
    assert "only 1200 training steps (38,400 images)" in few_images[-1]
    assert short_run_notes(cfg, steps=500, images=128_000, is_image=True)[-1].startswith("only 500")  # batch 256
    ramp = replace(cfg, train=replace(cfg.train, ema_rampup=0.1))
    assert ema_initial_share(ramp, 12800) < 1e-6  # the ramp-up forgets the initial weights fast


def test_budget_defaults_scale_with_the_planned_images():
    from difflab.train.state import budget_defaults

    cfg = budget_defaults(RunConfig(), 20_000)
    assert cfg.train.warmup_images == 1000 and cfg.train.ema_half_life_images == 2000
    cfg = budget_defaults(RunConfig(), 10_000_000)
    assert cfg.train.warmup_images == 5000 and cfg.train.ema_half_life_images == 50_000


def test_ctrl_c_leaves_metrics_plot_and_checkpoint_at_one_step(tmp_path):
    run = tmp_path / "r"
    cmd = command("train", *TINY, "--set", "train.log_every=1", "--max-images", "10000000", "--out", "r")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(proc, run / "metrics.jsonl", 5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    step = read_meta(run / "checkpoint.safetensors")["step"]
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == step >= 5
    assert (run / "loss.png").is_file() and not (run / "samples.png").exists()
    last = err.strip().splitlines()[-1]
    assert f"stopped at step {step}" in last and "--resume" in last, err
    p = run_cli("train", "--out", "r", "--resume", "--max-images", str(32 * (step + 2)), "--sample", "0",
                cwd=tmp_path)
    assert p.returncode == 0 and "resuming from" in p.stdout, p.stderr
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, step + 3))


def test_an_nfe_sweep_scores_every_sampler_at_every_budget_with_a_plot(tiny_run):
    cwd, _ = tiny_run
    torch.manual_seed(0)
    feats = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten())  # any TorchScript feature map (grey images come as 3 channels)
    torch.jit.save(torch.jit.script(feats), str(cwd / "feats.pt"))
    p = run_cli("eval", "sweep", "--run", "run", "--samplers", "dpmpp_pc,edm", "--nfe", "2,5", "--num", "6",
                "--seeds", "2", "--features", "feats.pt", "--out", "sweep", "--quiet", cwd=cwd)
    assert p.returncode == 0, p.stderr
    points = json.loads((cwd / "sweep" / "sweep.json").read_text())
    # edm (2 evaluations per step) cannot run 2 NFE and spends 5 as 2 Heun steps + the final step
    assert [(q["sampler"], q["nfe"]) for q in points] == [("dpmpp_pc", 2), ("dpmpp_pc", 5), ("edm", 5)]
    assert all(q["metric"] == "fid" and q["n"] == 6 and q["spread"] > 0 and q["value"] > 0 for q in points)
    assert (cwd / "sweep" / "sweep.png").stat().st_size > 1000
    assert_one_line_error(run_cli("eval", "sweep", "--run", "run", "--samplers", "rk45", cwd=cwd), "--samplers", "rk45")
    assert_one_line_error(run_cli("eval", "sweep", "--run", "run", "--nfe", "1,x", cwd=cwd), "--nfe")
