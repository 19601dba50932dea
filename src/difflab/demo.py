"""The main job: train a DDPM on MNIST within a time budget, sample it, draw it, and report."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from difflab.config import build_config
from difflab.eval.likelihood import evaluate_nll
from difflab.eval.report import write_report
from difflab.runs import sample_run, train_run, trajectory_figures
from difflab.train.run import load_run

# Chosen by measurement for ~8 minutes of 2 CPU cores (docs/benchmarks.md): a narrow U-Net (16-32-64 channels)
# takes twice the steps of a 32-64-64 one in the same time and wins; v-prediction keeps backgrounds clean
# where eps-prediction leaves grey ones at this budget; 250 strided ancestral steps leave time for training.
DEMO = {
    "arch": "unet",
    "data": {"name": "mnist", "split": "train"},
    "schedule": {"kind": "linear", "T": 1000},
    "unet": {"in_channels": 1, "base_channels": 16, "channel_mult": [1, 2, 4], "num_res_blocks": 1,
             "attention_levels": [2], "dropout": 0.0},
    "train": {"parameterization": "v", "batch_size": 64, "lr": 2e-3, "warmup_images": 5000,
              "ema_half_life_images": 10000, "ema_rampup": 0.2, "max_images": 10_000_000, "minutes": 8.0,
              "checkpoint_every_images": 20000, "log_every": 25},
    "sample": {"num_samples": 64, "steps": 250, "variance": "posterior", "clip": True, "batch_size": 64},
}


def run_demo(out: str | Path, minutes: float, seed: int = 0, overrides: list[str] = (),
             log: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Train + sample + figures + report in `out`; returns the report's path."""
    out = Path(out)
    base = {**DEMO, "train": {**DEMO["train"], "minutes": minutes, "seed": seed},
            "sample": {**DEMO["sample"], "seed": seed}}
    cfg = build_config(None, overrides, base=base)
    t0 = time.time()
    res = train_run(cfg, out, overwrite=True, log=log, progress=progress)  # the demo folder is remade each time
    run = load_run(out)
    _, sample_secs = sample_run(run, out, cfg.sample, log=log, progress=progress)
    trajectory_figures(run, out, seed=seed)
    bounds = {v: evaluate_nll(run, split="test", num_images=256, num_t=32, seed=seed, variance=v, log=log,
                               progress=progress) for v in ("posterior", "beta")}
    nll = min(bounds.values(), key=lambda r: r.total)  # both are valid bounds: report the tighter
    for r in bounds.values():
        log(r.table())
    total = time.time() - t0
    facts = {
        "data": f"{cfg.data.name} ({cfg.data.split} split), shape {run.shape}",
        "network": f"U-Net, {sum(p.numel() for p in run.net.parameters()):,} parameters",
        "training": f"{res.steps} steps, {res.images:,} images, {res.seconds:.0f} s (stopped by {res.stopped_by})",
        "final loss": f"{res.final_loss:.4f}",
        "sampling": f"{cfg.sample.num_samples} samples, {cfg.sample.steps or cfg.schedule.T} ancestral steps, "
                    f"{sample_secs:.0f} s (EMA weights)",
        "test-set bound": f"{nll.bpd(nll.total):.3f} +- {nll.bpd(nll.stderr):.3f} bits/dim (negative ELBO, "
                          f"{nll.images} MNIST test images, {nll.method} sampling of t, reverse variance "
                          f"{nll.variance}; with {_other(bounds, nll)})",
        "total time": f"{total:.0f} s",
    }
    figures = {"samples.png": "Samples (Algorithm 2, EMA weights)", "forward.png": "Forward process x_0 to x_T",
               "reverse.png": "One reverse trajectory x_T to x_0", "loss.png": "Training loss"}
    summary = {"steps": res.steps, "images_seen": res.images, "train_seconds": round(res.seconds, 1),
               "test_bpd": round(nll.bpd(nll.total), 4), "test_bpd_stderr": round(nll.bpd(nll.stderr), 4),
               "sample_seconds": round(sample_secs, 1), "total_seconds": round(total, 1), "final_loss": res.final_loss}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    tables = "\n\n".join(r.table() for r in bounds.values())
    notes = f"## The bound, term by term\n\n```\n{tables}\n```\n"
    path = write_report(out, "difflab demo: DDPM on MNIST", cfg, facts, figures, notes)
    log(f"report: {path}")
    return path


def _other(bounds: dict, best) -> str:
    return ", ".join(f"variance {v}: {r.bpd(r.total):.3f}" for v, r in bounds.items() if r is not best)
