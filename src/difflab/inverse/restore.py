"""Restoration tasks end to end: the task's operator for a model's image shape, its classical baselines, and the
diffusion posterior methods on any trained run and any sampler:

  project   replacement of the measured part after every step (needs A^+: inpaint, superres, mri)
  repaint   project with RePaint's resampling (each interval `jumps` times; one-step samplers keep their order)
  dps       diffusion posterior sampling through x0_hat (zeta = 1: the Gaussian likelihood approximation)
  dds       data consistency: x0_hat moved towards the measurements by conjugate gradients on a proximal problem
            weighted by zeta (A and A^T only; no gradient)
  moment    Tweedie moment projection (exact for Gaussian data; conjugate gradients on Jacobian-vector products)
  conditional  a run trained for super-resolution (unet.lowres_factor): the low-resolution image as its condition
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch
from torch import Tensor

from difflab.condition import LOWRES, MEASUREMENT, Condition
from difflab.errors import UserError
from difflab.inverse.names import METHODS, TASKS
from difflab.inverse.posterior import DPS, DataConsistency, MeasuredProjection, MomentProjection, resampled
from difflab.operators import MRI, Blur, Downsample, Inpaint, Operator, Radon

from difflab.inverse.inputs import load_mask
from difflab.samplers.walk import StepCallback

__all__ = ["METHODS", "TASKS", "TaskConfig", "OPERATORS", "build_operator", "posterior_sample", "posterior_mean"]


@dataclass(frozen=True)
class TaskConfig:
    """A restoration task and its operator's settings."""

    task: str = "inpaint"
    noise_std: float = 0.01  # Gaussian measurement noise (in the [-1, 1] image scale; complex k-space: per entry)
    mask: str = "box"  # inpaint: box (the centre half missing), random (70 % of pixels missing) or a PNG path
    factor: int = 4  # superres: downsampling factor
    blur: float = 1.5  # deblur: Gaussian blur sigma in pixels
    acceleration: int = 4  # mri: columns / sampled columns
    center_fraction: float = 0.08  # mri: share of fully sampled low-frequency columns
    views: int = 30  # ct: projection angles over 180 degrees
    seed: int = 0  # random masks

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise UserError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")


def _inpaint(tc: TaskConfig, shape: tuple[int, int, int]) -> Inpaint:
    if tc.mask == "box":
        return Inpaint.box(shape, 0.5, tc.noise_std)
    if tc.mask == "random":
        return Inpaint.random(shape, 0.7, tc.seed, tc.noise_std)
    return Inpaint(load_mask(tc.mask), shape, tc.noise_std)


OPERATORS: dict[str, Callable[[TaskConfig, tuple[int, int, int]], Operator]] = {  # task -> its operator
    "inpaint": _inpaint,
    "superres": lambda tc, shape: Downsample(tc.factor, shape, tc.noise_std),
    "deblur": lambda tc, shape: Blur(tc.blur, shape, tc.noise_std),
    "mri": lambda tc, shape: MRI(shape, tc.acceleration, tc.center_fraction, tc.seed, tc.noise_std),
    "ct": lambda tc, shape: Radon(shape, tc.views, tc.noise_std),
}


def build_operator(tc: TaskConfig, shape: tuple[int, int, int]) -> Operator:
    """The task's operator for images of `shape`."""
    return OPERATORS[tc.task](tc, shape)


def posterior_sample(pipe, op: Operator, y: Tensor, method: str, *, nfe: Optional[int] = None,
                     sampler: Optional[str] = None, seed: int = 0, zeta: float = 1.0, jumps: int = 5,
                     iters: Optional[int] = None, log: Callable[[str], None] | None = None, progress: bool = False,
                     callback: Optional[StepCallback] = None) -> Tensor:
    """One restoration per measurement row of y by `method` with the run's sampler (or `sampler` at `nfe`);
    `callback(i, t, x, pred)` sees every step."""
    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if tuple(op.shape) != tuple(pipe.shape):
        raise UserError(f"the run makes images {tuple(pipe.shape)} but the {op.name} input is {tuple(op.shape)}: use "
                        "a run trained on this image size and channels, or --resize")
    y = op.check_measurement(y)
    sc = pipe.sample_config(len(y), sampler=sampler, nfe=nfe, seed=seed, batch_size=min(len(y), 64))
    plan = pipe.plan(sc, log or (lambda s: None))
    schedule = pipe.schedule
    if method == "conditional":
        kind = next((k for k in pipe.kinds if k.field == LOWRES), None)
        if kind is None or not kind.takes(op):
            raise UserError(f"--method conditional needs a run trained for {getattr(op, 'factor', 'k')}x "
                            f"super-resolution (unet.lowres_factor) and --task superres; this run has "
                            f"unet.lowres_factor={kind.factor if kind is not None else 0}")
        return pipe.draw(plan, cond=kind.measured(op, y), log=log, progress=progress, callback=callback)

    measurement = Condition({MEASUREMENT: y}, {MEASUREMENT: torch.zeros_like(y[0])})  # read by the transform / hook
    own = pipe.condition(sc)
    cond = measurement if own is None else own.join(measurement)
    transform = {"dps": lambda den: DPS(den, op, None, schedule, zeta),
                 "dds": lambda den: DataConsistency(den, op, None, schedule, iters or 10, zeta),
                 "moment": lambda den: MomentProjection(den, op, None, iters or 5)}.get(method)
    hook = MeasuredProjection(op, schedule, seed + 7_000_001) if method in ("project", "repaint") else None
    fn = None
    if method == "repaint":
        if not plan.spec.one_step:  # resampling restarts the sampler every interval: no history
            if log is not None:
                log(f"repaint: {plan.config.sampler} keeps a history across steps; resampling with ddim instead")
            plan = pipe.plan(replace(sc, sampler="ddim"), log or (lambda s: None))
        fn = resampled(plan.spec.fn, jumps, schedule)
    return pipe.draw(plan, cond=cond, guidance=transform, hook=hook, sampler=fn, log=log, progress=progress,
                     callback=callback)


def posterior_mean(pipe, op: Operator, y: Tensor, method: str, samples: int, **kw) -> tuple[Tensor, Tensor]:
    """The mean and the pixel standard deviation of `samples` restorations per measurement row, (B, C, H, W) each,
    drawn in one batch (row k of copy j is example j * B + k of the run's noise streams). The mean estimates E[x | y],
    the estimate of least squared error: the one to compare with a regularized least-squares baseline on PSNR (one
    posterior sample has about twice the posterior mean's squared error); the deviation is the sampler's own
    uncertainty map."""
    if not (isinstance(samples, int) and samples >= 1):
        raise UserError(f"--samples must be a whole number >= 1, got {samples}")
    y = op.check_measurement(y)
    draws = posterior_sample(pipe, op, y.repeat(samples, *[1] * (y.ndim - 1)), method, **kw)
    draws = draws.reshape(samples, len(y), *draws.shape[1:])  # (K, B, C, H, W)
    std = draws.std(0, unbiased=True) if samples > 1 else torch.zeros_like(draws[0])
    return draws.mean(0), std
