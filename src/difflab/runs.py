"""The three jobs a user runs: train a run folder, sample from it, and the demo that does both and reports."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from difflab.budget import Budget, reserve_seconds
from difflab.config import RunConfig, SampleConfig
from difflab.data.build import build_dataset
from difflab.eval.plots import forward_frames, plot_loss, plot_strip, read_metrics
from difflab.pipeline import Pipeline
from difflab.samplers.generate import generate
from difflab.schedules.grids import discrete_grid
from difflab.train.build import build_network, build_objective, build_schedule
from difflab.train.distributed import is_main_process
from difflab.train.loop import TrainResult, check_fit, train
from difflab.train.run import LoadedRun
from difflab.train.state import budget_defaults

Log = Callable[[str], None]


def train_run(cfg: RunConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False, log: Log = print,
              progress: bool = True, budget: Budget | None = None,
              after: Callable[[Pipeline], Sequence[float]] | None = None) -> TrainResult:
    """Build the dataset and train into `out` (checkpoint, config.yaml, metrics.jsonl, loss.png; the plot also after
    Ctrl-C). With a time budget, training stops early enough for the follow-up work `after` estimates (seconds,
    from timed evaluations of an untrained network of the same shape) to fit in it."""
    budget = budget or Budget()
    if cfg.data.path:  # stored absolute, so the run can be evaluated from any folder
        cfg = replace(cfg, data=replace(cfg.data, path=str(Path(cfg.data.path).resolve())))
    data = build_dataset(cfg.data)
    main = is_main_process()
    if main:
        log(f"data: {cfg.data.name} {len(data)} examples of shape {data.shape}")
    reserve, probe = 0.0, None
    if after is not None and cfg.model == "diffusion":
        net = build_network(cfg).eval()
        check_fit(cfg, net, data, build_objective(cfg, data.spec, net))  # a misfit says so before it is timed
        probe = Pipeline(LoadedRun(cfg, net, net, 0, 0, data.spec))
        reserve = reserve_seconds(after(probe))
    if cfg.model == "diffusion":
        cfg = budget_defaults(cfg, planned_images(cfg, probe, budget, reserve))
    try:
        with budget.phase("training"):
            res = train(cfg, data, out, resume=resume, overwrite=overwrite, log=log, progress=progress,
                        reserve_s=reserve + budget.elapsed())
    finally:
        if main and (Path(out) / "metrics.jsonl").exists():
            plot_loss(read_metrics(Path(out) / "metrics.jsonl"), Path(out) / "loss.png")
    if main:
        for note in res.notes:
            log(f"note: {note}")
    return res


def planned_images(cfg: RunConfig, probe: Pipeline | None, budget: Budget, reserve: float) -> int:
    """The images a run expects to see: max_images, or fewer when a time budget (timed by the probe: a training
    step costs about 3 network evaluations of its batch) ends it first."""
    tc = cfg.train
    if not tc.minutes or probe is None:
        return tc.max_images
    step_s = 3 * probe.eval_seconds(tc.batch_size)
    return max(tc.batch_size, min(tc.max_images, int((tc.minutes * 60 - reserve - budget.elapsed()) / step_s)
                                  * tc.batch_size))


def sample_to(pipe: Pipeline, out: str | Path, sc: SampleConfig, *, log: Log = print, progress: bool = True,
              name: str = "samples", budget: Budget | None = None) -> Tensor:
    """Plan (its cost is printed first), draw and save NAME.png and NAME.npz in `out`; returns the samples."""
    budget = budget or Budget()
    with budget.phase("sampling"):
        plan = pipe.plan(sc, log)
        log(plan.describe())
        x = pipe.draw(plan, log=log, progress=progress)
        path = pipe.save(x, out, name)
    log(f"wrote {sc.num_samples} samples to {path} in {budget.spent['sampling']:.0f}s")
    return x


def write_summary(out: str | Path, res: TrainResult, budget: Budget, **extra) -> Path:
    """RUN/summary.json: what training did, why it may mean little, and where the command's time went."""
    path = Path(out) / "summary.json"
    path.write_text(json.dumps({"steps": res.steps, "images_seen": res.images, "stopped_by": res.stopped_by,
                                "final_loss": res.final_loss, "notes": list(res.notes), **extra,
                                "seconds": budget.summary()}, indent=1))
    return path


def trajectory_figures(pipe: Pipeline, out: Path, n: int = 4, seed: int = 0, cols: int = 8) -> None:
    """forward.png (x_0 -> x_T by the diffusion kernel) and reverse.png (x_T -> x_0 by Algorithm 2)."""
    cfg = pipe.cfg
    T = cfg.schedule.T
    times = [round(float(v), 3) for v in np.linspace(0, 1, cols)]
    x0 = build_dataset(replace(cfg.data, limit=n)).x[:n]
    schedule = build_schedule(cfg)
    plot_strip(forward_frames(x0, schedule, times, seed), [round(t * T) for t in times], out / "forward.png",
               "forward process q(x_t | x_0): data to noise")
    keep = {round(t * T) for t in times}
    frames, ftimes = [], []

    def grab(i, t, x, pred):
        step = round(float(t) * T)
        if step in keep:
            frames.append(x.cpu())
            ftimes.append(step)

    x = generate(pipe.clipped(pipe.denoiser, cfg.sample.clip), x0.shape[1:], n, schedule, discrete_grid(T),
                 seed=seed + 10_000, callback=grab, cond=pipe.condition(replace(cfg.sample, num_samples=n)),
                 device=pipe.device, variance=cfg.variance)
    frames.append(x)
    ftimes.append(0)
    plot_strip(frames, ftimes, out / "reverse.png", "reverse process p_theta(x_{t-1} | x_t): noise to data")
