"""The main job: train a DDPM on MNIST within a time budget, sample it, draw it, and report."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from difflab.autoencoder import VAEReport, report_vae
from difflab.budget import Budget
from difflab.config import SampleConfig, build_config, merge
from difflab.data.dataset import DataConfig
from difflab.errors import UserError
from difflab.eval.likelihood import evaluate_nll
from difflab.eval.report import write_report
from difflab.latent.recipe import AUTOENCODER_DEFAULTS, body_flags, latent_flags
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


# Without native bf16 (an AVX2 CPU: fp32 steps ~3x slower) pixel diffusion gets ~650 steps of 64 in 8 minutes (FID
# ~52); latent diffusion trains a VAE for a quarter of the budget, then a 4x wider one-level U-Net on its 4 x 7 x 7
# latents at ~2.7x the steps a second (FID ~28; docs/benchmarks.md#the-demo-on-a-cpu-without-native-bf16).
RECIPES = ("auto", "pixel", "latent")
AE_SHARE = 0.25  # the latent recipe: the autoencoder's share of the demo's minutes
LATENT = {"unet": {"base_channels": 64},
          "sample": {"sampler": "dpmpp_3m", "nfe": 20, "steps": None, "variance": "auto", "grid": "auto"}}

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


def pick_recipe(recipe: str = "auto", log: Callable[[str], None] = print) -> str:
    """pixel (Algorithm 2 on the images) or latent (a VAE, then diffusion on its latents); auto: latent where the
    default device has no native bf16 (train.precision=auto trains in fp32 there, ~3x slower a step), said in the log."""
    if recipe not in RECIPES:
        raise UserError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    if recipe != "auto":
        return recipe
    if resolve_precision("auto", resolve_device("auto")) != "fp32":
        return "pixel"
    log("this machine has no native bf16 (fp32 steps, ~3x slower): the demo trains latent diffusion, a VAE for "
        f"{AE_SHARE:.0%} of the budget and then a U-Net on its 4 x 7 x 7 latents (--recipe pixel: on the pixels)")
    return "latent"


def train_autoencoder(out: Path, minutes: float, seed: int, log: Callable[[str], None], progress: bool,
                      budget: Budget) -> VAEReport:
    """The latent recipe's first stage: `difflab train-autoencoder` on MNIST for `minutes` (on `budget`'s clock)."""
    cfg = build_config(None, [*body_flags(DataConfig(name="mnist")), f"train.minutes={minutes}",
                              f"train.seed={seed}"], base={**AUTOENCODER_DEFAULTS, "data": DEMO["data"]})
    log(f"stage 1 of 2: the autoencoder for {minutes:g} min into {out}")
    with budget.phase("autoencoder"):
        res = train_run(cfg, out, overwrite=True, log=log, progress=progress, budget=Budget(clock=budget.clock))
        return report_vae(cfg, out, res, eval_images=256, log=log)


def run_demo(out: str | Path, minutes: float, seed: int = 0, overrides: list[str] = (),
             log: Callable[[str], None] = print, progress: bool = True, budget: Budget | None = None,
             recipe: str = "auto") -> Path:
    """Train + sample + figures + report in `out` within `minutes` in all (on `budget`'s clock, from its start;
    default: from now) by `recipe` (RECIPES); returns the report's path."""
    out = Path(out)
    budget = budget or Budget()
    budget.seconds = minutes * 60
    recipe = pick_recipe(recipe, log)
    base = {**DEMO, "train": {**DEMO["train"], "minutes": minutes, "seed": seed},
            "sample": {**DEMO["sample"], "seed": seed}}
    flags, ae = [], None
    if recipe == "latent":
        ae = train_autoencoder(out / "autoencoder", AE_SHARE * minutes, seed, log, progress, budget)
        base = merge(base, LATENT)
        flags = latent_flags(str(out / "autoencoder"), data_given=False)
        log("stage 2 of 2: diffusion on the autoencoder's latents")
    cfg = build_config(None, [*flags, *overrides], base=base)

    fit = None

    def after(pipe: Pipeline) -> list[float]:
        nonlocal fit
        fit = fit_demo(pipe, cfg.sample, budget.seconds, log)
        return list(fit.estimates)

    res = train_run(cfg, out, overwrite=True, log=log, progress=progress, budget=budget, after=after,
                    after_what="the demo's samples and bounds (timed)")
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
    params = f"{sum(p.numel() for p in pipe.net.parameters()):,} parameters"
    cost = f"{sc.nfe} network evaluations" if sc.steps is None else f"{sc.steps} steps"
    facts = {
        "data": f"{cfg.data.name} ({cfg.data.split} split), shape {pipe.data_spec.shape}",
        "network": f"U-Net, {params}" if ae is None else
                   f"U-Net on the {'x'.join(map(str, pipe.shape))} latents of a VAE, {params} (autoencoder: "
                   f"{ae.rmse:.3f} round-trip RMSE, autoencoder/report.md)",
        "training": f"{res.steps} steps, {res.images:,} images, {res.seconds:.0f} s (stopped by {res.stopped_by})",
        "final loss": f"{res.final_loss:.4f}",
        "sampling": f"{sc.num_samples} samples, {sc.sampler}, {cost} (EMA weights)"
                    + (f"; cut to fit the budget: {'; '.join(cuts)}" if cuts else ""),
        "test-set bound": f"{nll.bpd(nll.total):.3f} +- {nll.bpd(nll.stderr):.3f} bits/dim (negative ELBO"
                          f"{' of the whole model' if ae else ''}, {nll.images} MNIST test images, {nll.method} "
                          f"sampling of t, reverse variance {nll.variance}; with {_other(bounds, nll)})",
        "time": budget.line().removeprefix("time: "),
    }
    how = "Algorithm 2" if ae is None else f"{sc.sampler}, decoded"
    figures = {"samples.png": f"Samples ({how}, EMA weights)", "forward.png": "Forward process x_0 to x_T",
               "reverse.png": "One reverse trajectory x_T to x_0", "loss.png": "Training loss"}
    write_summary(out, res, budget, test_bpd=round(nll.bpd(nll.total), 4),
                  test_bpd_stderr=round(nll.bpd(nll.stderr), 4))
    tables = "\n\n".join(r.table() for r in bounds.values())
    warn = "".join(f"- {n}\n" for n in res.notes)
    notes = (f"## Too short to mean much\n\n{warn}\n" if warn else "") + \
        f"## The bound, term by term\n\n```\n{tables}\n```\n\n## Where the time went\n\n" + \
        "| phase | seconds |\n|---|---|\n" + "".join(f"| {k} | {v:.0f} |\n" for k, v in spent.items())
    title = "DDPM on MNIST" if ae is None else "latent diffusion on MNIST"
    path = write_report(out, f"difflab demo: {title}", cfg, facts, figures, notes)
    log(f"report: {path}")
    log(budget.line())
    return path


def _other(bounds: dict, best) -> str:
    return ", ".join(f"variance {v}: {r.bpd(r.total):.3f}" for v, r in bounds.items() if r is not best)
