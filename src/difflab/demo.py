"""The main job: train a DDPM on MNIST within a time budget, sample it, draw it, and report."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from difflab.budget import Budget
from difflab.config import SampleConfig, build_config
from difflab.eval.likelihood import evaluate_nll
from difflab.eval.report import write_report
from difflab.pipeline import Pipeline, load
from difflab.runs import ReverseFrames, sample_to, train_run, trajectory_figures, write_summary
from difflab.train.distributed import resolve_device
from difflab.train.precision import resolve_precision

# Chosen by measurement for ~8 minutes of 2 CPU cores (docs/benchmarks.md): a narrow U-Net (16-32-64 channels)
# takes twice the steps of a 32-64-64 one in the same time and wins; v-prediction keeps backgrounds clean
# where eps-prediction leaves grey ones at this budget; 250 strided ancestral steps leave time for training.
DEMO = {
    "arch": "unet",
    "data": {"name": "mnist", "split": "train"},
    "schedule": {"kind": "linear", "T": 1000},
    "unet": {"in_channels": 1, "base_channels": 16, "channel_mult": [1, 2, 4], "num_res_blocks": 1,
             "attention_levels": [2], "dropout": 0.0},
    "train": {"parameterization": "v", "batch_size": 64, "lr": 2e-3, "warmup_images": 5000, "precision": "auto",
              "ema_half_life_images": 10000, "ema_rampup": 0.2, "max_images": 10_000_000, "minutes": 8.0,
              "checkpoint_every_images": 20000, "log_every": 25},
    "sample": {"sampler": "ancestral", "num_samples": 64, "steps": 250, "variance": "posterior", "grid": "discrete",
               "clip": True, "batch_size": 64},
}


# Without native bf16 (an AVX2 CPU: fp32 steps ~3x slower) the demo's budget buys ~650 steps of 64: half the
# batch gives twice the updates for the same images and trains further (FID 50.7 against 54.4 after 40k images,
# docs/benchmarks.md#the-demo-on-a-cpu-without-native-bf16).
SLOW_BATCH = 32

NLL_IMAGES, NLL_T, NLL_BATCH = 256, 32, 64  # the bound's test images, t draws, batch
NLL_SHARE, NLL_MIN = 0.15, 16  # the bound takes at most this share of the budget (on at least NLL_MIN images)
SAMPLE_SHARE, SAMPLE_MIN_STEPS = 0.25, 25  # so do the samples: fewer ancestral steps on a short budget


@dataclass(frozen=True)
class DemoFit:
    """The work after training, shrunk to fit a budget, and its estimated seconds."""

    sample: SampleConfig  # the samples (which also give the reverse strip), maybe on fewer steps
    nll_images: int  # test images of the two bounds
    cuts: tuple[str, ...]  # what was shrunk, said in the log and the report
    estimates: tuple[float, float]  # seconds: the samples, the two bounds


def fit_demo(pipe: Pipeline, sc: SampleConfig, budget_s: float, log: Callable[[str], None] = print) -> DemoFit:
    """Shrink the demo's samples (fewer steps) and bounds (fewer images) to their shares of `budget_s`, from
    the timed evaluations of `pipe` (an untrained network of the run's shape)."""
    per_batch = 2 * (NLL_T + 2) * pipe.eval_seconds(NLL_BATCH)  # both variances
    nll_images = max(NLL_MIN, min(NLL_IMAGES, int(NLL_SHARE * budget_s / per_batch) * NLL_BATCH))
    cuts = []
    plan = pipe.plan(sc, log)
    if plan.seconds > SAMPLE_SHARE * budget_s and sc.steps:  # a short demo samples on fewer steps
        steps = max(SAMPLE_MIN_STEPS, int(sc.steps * SAMPLE_SHARE * budget_s / plan.seconds))
        if steps < sc.steps:
            cuts.append(f"{sc.steps} -> {steps} sampling steps")
            sc = replace(sc, steps=steps)
            plan = pipe.plan(sc, log)
    if nll_images < NLL_IMAGES:
        cuts.append(f"the bound on {nll_images} instead of {NLL_IMAGES} test images")
    return DemoFit(sc, nll_images, tuple(cuts), (plan.seconds, -(-nll_images // NLL_BATCH) * per_batch))


def machine_recipe(log: Callable[[str], None] = print) -> dict:
    """The demo's training settings for the machine it runs on: batch SLOW_BATCH where the default device has no
    native bf16 (train.precision=auto trains in fp32 there), said in the log; nothing to change elsewhere."""
    if resolve_precision("auto", resolve_device("auto")) != "fp32":
        return {}
    log(f"this machine has no native bf16: fp32 steps, ~3x slower than bf16; the demo trains at batch {SLOW_BATCH} "
        f"instead of {DEMO['train']['batch_size']} for twice the updates (train.batch_size to override)")
    return {"batch_size": SLOW_BATCH}


def run_demo(out: str | Path, minutes: float, seed: int = 0, overrides: list[str] = (),
             log: Callable[[str], None] = print, progress: bool = True, budget: Budget | None = None) -> Path:
    """Train + sample + figures + report in `out` within `minutes` in all (on `budget`'s clock, from its start;
    default: from now); returns the report's path."""
    out = Path(out)
    budget = budget or Budget()
    budget.seconds = minutes * 60
    base = {**DEMO, "train": {**DEMO["train"], "minutes": minutes, "seed": seed, **machine_recipe(log)},
            "sample": {**DEMO["sample"], "seed": seed}}
    cfg = build_config(None, overrides, base=base)

    fit = None

    def after(pipe: Pipeline) -> list[float]:
        nonlocal fit
        fit = fit_demo(pipe, cfg.sample, budget.seconds, log)
        return list(fit.estimates)

    res = train_run(cfg, out, overwrite=True, log=log, progress=progress, budget=budget, after=after)
    sc, nll_images, cuts = fit.sample, fit.nll_images, fit.cuts
    if cuts:
        log(f"to fit --minutes {minutes:g}: {'; '.join(cuts)}")
    pipe = load(out)
    frames = ReverseFrames(n=4)
    x = sample_to(pipe, out, sc, log=log, progress=progress, budget=budget, callback=frames)
    with budget.phase("figures"):
        trajectory_figures(pipe, out, frames, x, seed=seed)
    with budget.phase("evaluation"):
        bounds = {v: evaluate_nll(pipe.run, split="test", num_images=nll_images, num_t=NLL_T, seed=seed, variance=v,
                                  batch_size=NLL_BATCH, log=log, progress=progress) for v in ("posterior", "beta")}
    nll = min(bounds.values(), key=lambda r: r.total)  # both are valid bounds: report the tighter
    for r in bounds.values():
        log(r.table())
    spent = budget.summary()
    facts = {
        "data": f"{cfg.data.name} ({cfg.data.split} split), shape {pipe.shape}",
        "network": f"U-Net, {sum(p.numel() for p in pipe.net.parameters()):,} parameters",
        "training": f"{res.steps} steps, {res.images:,} images, {res.seconds:.0f} s (stopped by {res.stopped_by})",
        "final loss": f"{res.final_loss:.4f}",
        "sampling": f"{sc.num_samples} samples, {sc.sampler}, {sc.steps} steps (EMA weights)"
                    + (f"; cut to fit the budget: {'; '.join(cuts)}" if cuts else ""),
        "test-set bound": f"{nll.bpd(nll.total):.3f} +- {nll.bpd(nll.stderr):.3f} bits/dim (negative ELBO, "
                          f"{nll.images} MNIST test images, {nll.method} sampling of t, reverse variance "
                          f"{nll.variance}; with {_other(bounds, nll)})",
        "time": budget.line().removeprefix("time: "),
    }
    figures = {"samples.png": "Samples (Algorithm 2, EMA weights)", "forward.png": "Forward process x_0 to x_T",
               "reverse.png": "One reverse trajectory x_T to x_0", "loss.png": "Training loss"}
    write_summary(out, res, budget, test_bpd=round(nll.bpd(nll.total), 4),
                  test_bpd_stderr=round(nll.bpd(nll.stderr), 4))
    tables = "\n\n".join(r.table() for r in bounds.values())
    warn = "".join(f"- {n}\n" for n in res.notes)
    notes = (f"## Too short to mean much\n\n{warn}\n" if warn else "") + \
        f"## The bound, term by term\n\n```\n{tables}\n```\n\n## Where the time went\n\n" + \
        "| phase | seconds |\n|---|---|\n" + "".join(f"| {k} | {v:.0f} |\n" for k, v in spent.items())
    path = write_report(out, "difflab demo: DDPM on MNIST", cfg, facts, figures, notes)
    log(f"report: {path}")
    log(budget.line())
    return path


def _other(bounds: dict, best) -> str:
    return ", ".join(f"variance {v}: {r.bpd(r.total):.3f}" for v, r in bounds.items() if r is not best)
