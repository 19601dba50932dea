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
from difflab.conditions.label import describe_classes, record_class_names
from difflab.config import RunConfig, SampleConfig
from difflab.data.build import build_dataset
from difflab.eval.plots import forward_frames, plot_loss, plot_strip, read_metrics
from difflab.latent.codec import model_data, resolve_latent
from difflab.pipeline import Pipeline, load, resolve_sampler
from difflab.train.build import build_network, build_objective, build_schedule
from difflab.train.distributed import is_main_process
from difflab.train.interrupt import Interrupted
from difflab.train.loop import TrainResult, check_fit, train
from difflab.train.run import LoadedRun

Log = Callable[[str], None]


def train_run(cfg: RunConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False, log: Log = print,
              progress: bool = True, budget: Budget | None = None,
              after: Callable[[Pipeline], Sequence[float]] | None = None,
              after_what: str = "the work after training") -> TrainResult:
    """Build the dataset and train into `out` (checkpoint, config.yaml, metrics.jsonl, loss.png; the plot also after
    Ctrl-C). With a time budget, training stops early enough for the follow-up work `after` estimates (seconds,
    from timed evaluations of an untrained network of the same shape) to fit in it."""
    budget = budget or Budget()
    if cfg.data.path:  # stored absolute, so the run can be evaluated from any folder
        cfg = replace(cfg, data=replace(cfg.data, path=str(Path(cfg.data.path).resolve())))
    if cfg.data.latent:  # the autoencoder pinned and the latent scale fixed, once, before anything trains
        cfg = replace(cfg, data=resolve_latent(cfg.data, build_dataset(cfg.data.pixels).x))
    data = model_data(cfg.data)
    cfg = replace(cfg, data=record_class_names(cfg.data, data.class_names))
    main = is_main_process()
    if main:
        latent = f" as latents of {cfg.data.latent} (scale {cfg.data.latent_scale:.6g})" if cfg.data.latent else ""
        log(f"data: {cfg.data.name} {len(data)} examples of shape {data.shape}{latent}")
        if data.class_names:
            log(f"classes: {describe_classes(data.class_names)}")
    reserve, probe = 0.0, None
    if after is not None and cfg.model == "diffusion" and main:  # rank 0 alone does the follow-up work
        net = build_network(cfg).eval()
        check_fit(cfg, net, data, build_objective(cfg, data.spec, net))  # a misfit says so before it is timed
        probe = Pipeline(LoadedRun(cfg, net, net, 0, 0, data.spec), clock=budget.clock)
        reserve = reserve_seconds(after(probe))
    planned = planned_images(cfg, probe, budget, reserve) if main else 0  # ranks > 0 take rank 0's
    try:
        with budget.phase("training"):
            res = train(cfg, data, out, resume=resume, overwrite=overwrite, log=log, progress=progress,
                        reserve_s=reserve + budget.elapsed(), planned_images=planned, clock=budget.clock,
                        reserve_for=after_what)
    finally:
        if main and (Path(out) / "metrics.jsonl").exists():
            plot_loss(read_metrics(Path(out) / "metrics.jsonl"), Path(out) / "loss.png")
    if main:
        for note in res.notes:
            log(f"note: {note}")
    return res


def train_and_sample(cfg: RunConfig, out: str | Path, *, sample: bool = True, resume: bool = False, log: Log = print,
                     progress: bool = True, budget: Budget | None = None) -> TrainResult:
    """`difflab train`: train into `out`, then (with `sample`, for a diffusion model) draw cfg.sample.num_samples
    samples, both within train.minutes (the budget's clock), and write summary.json."""
    budget = budget or Budget()
    budget.seconds = cfg.train.minutes * 60
    sampling = sample and cfg.model == "diffusion"
    try:
        res = train_run(cfg, out, resume=resume, log=log, progress=progress, budget=budget,
                        after=(lambda pipe: [pipe.plan(_estimable(cfg.sample), log).seconds]) if sampling else None,
                        after_what=f"the {cfg.sample.num_samples} samples after training (timed: fewer with --sample N, "
                                   "none with --sample 0)")
    except Interrupted as e:
        if e.result is not None and is_main_process():
            write_summary(out, e.result, budget)
        raise
    if not is_main_process():
        return res
    if sampling:
        try:
            sample_to(load(out), out, cfg.sample, log=log, progress=progress, budget=budget)
        except KeyboardInterrupt:
            raise Interrupted(f"sampling interrupted; training had finished and its checkpoint (step {res.steps}) is "
                              f"in {out}: draw samples with difflab sample --run {out}") from None
    write_summary(out, res, budget)
    log(budget.line())
    return res


def _estimable(sc: SampleConfig) -> SampleConfig:
    """A sample config whose cost can be estimated before training (a calibrated grid costs as much as its own)."""
    return replace(sc, grid="auto") if sc.grid == "calibrated" else sc


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
              name: str = "samples", budget: Budget | None = None, callback=None, guidance=None,
              cond=None) -> Tensor:
    """Plan (its cost is printed first), draw and save NAME.png and NAME.npz in `out`; returns the samples."""
    budget = budget or Budget()
    cond = pipe.condition(sc) if cond is None else cond  # a class or prompt the run cannot take: refused first
    with budget.phase("sampling"):
        plan = pipe.plan(sc, log)
        log(plan.describe())
        x = pipe.draw(plan, log=log, progress=progress, callback=callback, guidance=guidance, cond=cond)
        path = pipe.save(x, out, name, sc.classes)
    log(f"wrote {sc.num_samples} samples to {path} in {budget.spent['sampling']:.0f}s")
    return x


def write_summary(out: str | Path, res: TrainResult, budget: Budget, **extra) -> Path:
    """RUN/summary.json: what training did, why it may mean little, and where the command's time went."""
    path = Path(out) / "summary.json"
    path.write_text(json.dumps({"steps": res.steps, "images_seen": res.images, "stopped_by": res.stopped_by,
                                "final_loss": res.final_loss, "notes": list(res.notes), **extra,
                                "seconds": budget.summary()}, indent=1))
    return path


class ReverseFrames:
    """A StepCallback keeping x_t of the first n samples at the first grid time at or below each of `cols - 1`
    evenly spaced times, so the reverse-process figure comes from the samples themselves at no extra cost."""

    def __init__(self, n: int = 4, cols: int = 8):
        self.targets = [float(v) for v in np.linspace(1, 0, cols)[:-1]]  # the last column is x_0 itself
        self.n, self.frames, self.last = n, [], -1

    def __call__(self, i: int, t, x: torch.Tensor, pred) -> None:
        if i <= self.last:  # a second batch began: samples 0..n-1 were in the first
            self.targets = []
        self.last, t = i, float(t)
        if self.targets and t <= self.targets[0] + 1e-9:
            self.frames.append((t, x[: self.n].detach().cpu()))
            while self.targets and t <= self.targets[0] + 1e-9:
                self.targets.pop(0)


def trajectory_figures(pipe: Pipeline, out: Path, frames: ReverseFrames, x0: torch.Tensor, seed: int = 0,
                       cols: int = 8) -> None:
    """forward.png (x_0 -> x_T by the diffusion kernel) and reverse.png (x_T -> x_0 as the sampler went, from
    `frames` collected while sampling and the final samples x0)."""
    cfg = pipe.cfg
    T = cfg.schedule.T
    times = [round(float(v), 3) for v in np.linspace(0, 1, cols)]
    data = model_data(replace(cfg.data, limit=frames.n)).x[: frames.n]  # a latent run's latents, decoded to draw
    plot_strip([pipe.decode(x) for x in forward_frames(data, build_schedule(cfg), times, seed)],
               [round(t * T) for t in times], out / "forward.png", "forward process q(x_t | x_0): data to noise")
    images = [pipe.decode(x) for _, x in frames.frames] + [x0[: frames.n]]
    labels = [round(t * T) for t, _ in frames.frames] + [0]
    plot_strip(images, labels, out / "reverse.png",
               f"reverse process by {resolve_sampler(cfg.sample).sampler}: noise to data")
