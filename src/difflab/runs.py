"""The three jobs a user runs: train a run folder, sample from it, and the demo that does both and reports."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from difflab.condition import LABEL, Condition, check_condition
from difflab.config import RunConfig, SampleConfig
from difflab.data.build import build_dataset
from difflab.data.dataset import DataSpec, to_uint8
from difflab.eval.grid import save_grid
from difflab.eval.plots import forward_frames, plot_loss, plot_points, plot_strip, read_metrics
from difflab.errors import UserError
from difflab.prediction import Clip, Denoiser
from difflab.samplers.calibrate import calibrate_grid
from difflab.samplers.generate import generate
from difflab.noise import NoiseSource
from difflab.samplers.registry import SamplerSpec, get_sampler
from difflab.schedules.grids import discrete_grid, make_grid
from difflab.train.build import build_denoiser, build_schedule, model_classes
from difflab.train.distributed import is_main_process
from difflab.train.loop import TrainResult, train
from difflab.train.progress import Progress
from difflab.train.run import LoadedRun

Log = Callable[[str], None]


def train_run(cfg: RunConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False, log: Log = print,
              progress: bool = True) -> TrainResult:
    """Build the dataset and train into `out` (checkpoint, config.yaml, metrics.jsonl, loss.png)."""
    if cfg.data.path:  # stored absolute, so the run can be evaluated from any folder
        cfg = replace(cfg, data=replace(cfg.data, path=str(Path(cfg.data.path).resolve())))
    data = build_dataset(cfg.data)
    if is_main_process():
        log(f"data: {cfg.data.name} {len(data)} examples of shape {data.shape}")
    res = train(cfg, data, out, resume=resume, overwrite=overwrite, log=log, progress=progress)
    if is_main_process():
        plot_loss(read_metrics(Path(out) / "metrics.jsonl"), Path(out) / "loss.png")
    return res


CALIBRATION_SAMPLES = 64  # noise draws the calibrated grid is fitted on (streams apart from the samples')


def sampler_plan(cfg: RunConfig, sc: SampleConfig, schedule, denoiser=None, shape: tuple[int, ...] = (),
                 log: Log = print) -> tuple[SamplerSpec, Tensor, dict]:
    """The sampler, its time grid and options for a sample config (NFE -> steps by the sampler's cost model);
    grid 'calibrated' is fitted to `denoiser` first (samplers/calibrate.py)."""
    spec = get_sampler(sc.sampler)
    options = {"ancestral": {"variance": replace(cfg, sample=sc).variance}, "ddim": {"eta": sc.eta}}.get(sc.sampler, {})
    grid_name = spec.grid_for(schedule) if sc.grid == "auto" else sc.grid  # an explicit bad grid: make_grid's error
    if sc.sampler == "rk45":
        return spec, make_grid("uniform", schedule, 2), options
    steps = spec.steps_for_nfe(sc.sampler, sc.nfe, options) if sc.nfe else (sc.steps or schedule.steps or 100)
    if grid_name == "calibrated":
        if denoiser is None:
            raise UserError("the calibrated grid is fitted to a model: sample from a run (difflab sample)")
        device = next(denoiser.net.parameters()).device
        x_cal = NoiseSource.for_indices(sc.seed + 1_000_003, range(CALIBRATION_SAMPLES)).randn(shape).to(device)
        return spec, calibrate_grid(spec, denoiser, schedule, steps, x_cal, options=options, log=log), options
    return spec, make_grid(grid_name, schedule, steps), options


def sample_run(run: LoadedRun, out: str | Path, sc: SampleConfig, *, log: Log = print, progress: bool = True,
               name: str = "samples") -> tuple[Tensor, float]:
    """Samples from a loaded run (Algorithm 2 by default; sample.sampler picks another); writes NAME.png and NAME.npz;
    returns (samples, seconds)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = run.cfg
    net = run.ema if sc.use_ema else run.net
    denoiser = build_denoiser(cfg, net)
    device = next(net.parameters()).device
    schedule = denoiser.schedule
    shape = run.shape
    cond = sample_condition(run, sc)
    spec, grid, options = sampler_plan(cfg, sc, schedule, denoiser, shape, log)
    batches = -(-sc.num_samples // sc.batch_size)
    bar = Progress((len(grid) - 1) * batches, "sample", "step", every=max(1, (len(grid) - 1) // 4), log=log,
                   enabled=progress)
    t0 = time.time()
    with torch.no_grad():
        x = generate(clipped(denoiser, run.spec, sc.clip), shape, sc.num_samples, schedule, grid, seed=sc.seed,
                     batch_size=sc.batch_size, cond=cond, device=device, on_step=bar.update, sampler=spec.fn, **options)
    bar.close()
    secs = time.time() - t0
    if run.spec.is_image:
        save_grid(x, out / f"{name}.png")
        imgs = to_uint8(x).transpose(0, 2, 3, 1)  # (N, H, W, C)
        np.savez_compressed(out / f"{name}.npz", images=imgs[..., 0] if imgs.shape[-1] == 1 else imgs)
    else:
        reference = build_dataset(cfg.data).x[:2000]
        plot_points(x, out / f"{name}.png", reference)
        np.savez_compressed(out / f"{name}.npz", samples=x.numpy())
    log(f"wrote {sc.num_samples} samples to {out / (name + '.png')} in {secs:.0f}s")
    return x, secs


def clipped(denoiser: Denoiser, spec: DataSpec, clip: bool = True) -> Denoiser:
    """x0_hat clipped to the data's range when it has one and clipping is asked for (DDPM's sampler)."""
    return Clip(denoiser, *spec.value_range) if clip and spec.value_range is not None else denoiser


def sample_condition(run: LoadedRun, sc: SampleConfig) -> Condition | None:
    """The labels to sample: sample.classes cycled over the samples; without them a class-conditional model samples
    unconditionally if it was trained with condition dropout, else sample k gets class k mod C."""
    takes, nc, k = run.ema.conditions, model_classes(run.cfg)[0], torch.arange(sc.num_samples)
    if sc.classes:
        check_condition(takes, (LABEL,))
        return Condition.labels(torch.tensor(sc.classes)[k % len(sc.classes)], nc)
    if not takes:
        return None
    labels = Condition.labels(k % nc, nc)
    return labels.null() if run.cfg.train.cond_dropout > 0 else labels


def trajectory_figures(run: LoadedRun, out: Path, n: int = 4, seed: int = 0, cols: int = 8) -> None:
    """forward.png (x_0 -> x_T by the diffusion kernel) and reverse.png (x_T -> x_0 by Algorithm 2)."""
    cfg = run.cfg
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

    denoiser = clipped(build_denoiser(cfg, run.ema), run.spec, cfg.sample.clip)
    x = generate(denoiser, x0.shape[1:], n, schedule, discrete_grid(T), seed=seed + 10_000, callback=grab,
                 cond=sample_condition(run, replace(cfg.sample, num_samples=n)),
                 device=next(run.ema.parameters()).device, variance=cfg.variance)
    frames.append(x)
    ftimes.append(0)
    plot_strip(frames, ftimes, out / "reverse.png", "reverse process p_theta(x_{t-1} | x_t): noise to data")
