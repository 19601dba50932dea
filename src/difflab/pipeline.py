"""A trained run as one object: `difflab.load(path)` -> Pipeline with .sample, .save, .save_grid, .log_likelihood.

The CLI's `sample`, the samples after `train` and the demo all go through it: one code path from noise to images,
noise -> sampler(clip(guidance(denoiser))) -> decoder -> images in the data's range (the decoder: a latent run's
autoencoder; the identity for a pixel run)."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from difflab.budget import Clock, eval_seconds
from difflab.condition import KINDS, Condition, joined
from difflab.conditions.kinds import kinds_for
from difflab.conditions.label import class_indices
from difflab.latent.codec import run_codec
from difflab.config import RunConfig, SampleConfig, coerce_fields
from difflab.data.dataset import DataSpec
from difflab.errors import UserError
from difflab.noise import NoiseSource
from difflab.precond import Precond
from difflab.prediction import Clip, Denoiser
from difflab.samplers.calibrate import calibrate_grid
from difflab.samplers.generate import generate
from difflab.samplers.registry import AUTO_NFE, CountingDenoiser, SamplerSpec, auto_sampler, get_sampler
from difflab.samplers.walk import RowHook, StepCallback, StepHook
from difflab.schedules.base import Schedule
from difflab.schedules.grids import make_grid
from difflab.train.build import build_denoiser
from difflab.train.progress import Progress
from difflab.train.run import LoadedRun, load_run

Log = Callable[[str], None]
Transform = Callable[[Denoiser], Denoiser]  # denoiser -> denoiser (guidance, measurement consistency, ...)
CALIBRATION_SAMPLES = 64  # noise draws a calibrated grid is fitted on (streams apart from the samples')
SCHEDULES = ("linear", "cosine", "vp", "subvp", "ve", "edm")


def resolve_sampler(sc: SampleConfig) -> SampleConfig:
    """sample.sampler = auto replaced by the most accurate sampler at the asked budget (20 NFE if unset)."""
    return replace(sc, sampler=auto_sampler(sc.nfe or sc.steps or AUTO_NFE)) if sc.sampler == "auto" else sc


@dataclass(frozen=True)
class SamplingPlan:
    """What a sample call will do and cost, known before it runs."""

    config: SampleConfig
    spec: SamplerSpec
    grid_name: str
    grid: Tensor  # (steps + 1,) times from t_start down to 0
    options: dict  # sampler options (ancestral variance, ddim eta)
    nfe: int | None  # network evaluations per sample (None: adaptive, rk45)
    seconds: float  # estimate from one timed network evaluation
    chosen: bool = False  # the sampler was picked for the budget (sample.sampler = auto)

    def with_seed(self, seed: int) -> "SamplingPlan":
        """The same sampler, grid and cost for other noise streams (sample k of seed s: stream (s, k))."""
        return replace(self, config=replace(self.config, seed=seed))

    def describe(self) -> str:
        sc = self.config
        cost = f"{self.nfe} network evaluations each" if self.nfe else "adaptive steps (rk45)"
        why = " (the most accurate at this NFE; --sampler NAME to choose)" if self.chosen else ""
        return (f"drawing {sc.num_samples} samples with {sc.sampler}{why}, {cost}, on the {self.grid_name} grid "
                f"(~{self.seconds:.0f} s by one timed evaluation)")


# what sampling takes from the library's defaults, not from the run's config, unless asked (sample, restore, eval)
SAMPLER_FIELDS = ("sampler", "nfe", "steps", "grid", "variance", "eta")
LIBRARY_SAMPLING = SampleConfig()


class Pipeline:
    """A trained diffusion run: its network (EMA weights by default), schedule, preconditioning and data description.

    >>> pipe = difflab.load("runs/mnist")
    >>> x = pipe.sample(16, sampler="dpmpp_3m", nfe=20, seed=0)   # (16, 1, 28, 28) in [-1, 1]
    >>> pipe.save_grid(x, "grid.png")
    """

    def __init__(self, run: LoadedRun, *, use_ema: bool = True, clock: Clock = time.perf_counter):
        self.run, self.use_ema, self.clock = run, use_ema, clock  # clock: what plans time evaluations by
        self.cfg: RunConfig = run.cfg
        self.spec: DataSpec = run.spec
        self.net = run.ema if use_ema else run.net
        self.denoiser: Precond = build_denoiser(self.cfg, self.net)
        self.schedule: Schedule = self.denoiser.schedule
        self.device = next(self.net.parameters()).device
        self.kinds = tuple(k for k in kinds_for(self.cfg) if k.field in self.net.conditions)
        self.codec = run_codec(self.cfg.data, self.spec, self.device)  # a latent run's autoencoder, else None

    @property
    def shape(self) -> tuple[int, ...]:
        """One example of what the network denoises: (C, H, W), (C, L) or (D,); a latent run's latent shape."""
        return self.spec.shape

    @property
    def data_spec(self) -> DataSpec:
        """What the samples are once decoded: the data itself (a latent run: what its autoencoder encodes)."""
        return self.codec.spec if self.codec is not None else self.spec

    def decode(self, z: Tensor, seed: int = 0) -> Tensor:
        """Model space -> data space: a latent run's decoder (on the CPU; rows and sequences draw the decoder's
        noise, example k from stream (seed + 5_000_011, k): apart from the sampler's), else the identity."""
        if self.codec is None:
            return z
        noise = NoiseSource.for_indices(seed + 5_000_011, range(len(z)), z.device) if self.codec.samples_decoder else None
        return self.codec.decode(z, noise).cpu()

    def encode(self, x: Tensor, seed: int = 0) -> Tensor:
        """Data space -> model space: a latent run's scaled latents (a sample of q(z | x), example k from stream
        (seed, k)), else the identity."""
        if self.codec is None:
            return x
        return self.codec.encode(x.to(self.device), NoiseSource.for_indices(seed, range(len(x)), self.device))

    # -- sampling -----------------------------------------------------------------------------------------------
    def sample_config(self, n: int | None = None, **changes) -> SampleConfig:
        """The run's sample settings with `changes` (None: keep), but the sampler and its cost from the library's
        defaults (the automatic choice at 20 NFE: a run's own sampler, e.g. the demo's, is for its own report);
        asking nfe clears steps and vice versa, and an nfe without a sampler lets the budget pick the sampler."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "nfe" in changes and "sampler" not in changes:
            changes["sampler"] = "auto"
        if n is not None:
            changes["num_samples"] = n
        if "classes" in changes:
            changes["classes"] = class_indices(changes["classes"], self.cfg.data.class_names)
        if isinstance(changes.get("prompts"), str):
            changes["prompts"] = (changes["prompts"],)
        changes = coerce_fields(SampleConfig, changes, "sample")
        sc = replace(self.cfg.sample, **{f: getattr(LIBRARY_SAMPLING, f) for f in SAMPLER_FIELDS})
        if "nfe" in changes and "steps" not in changes:
            sc = replace(sc, steps=None)
        if "steps" in changes and "nfe" not in changes:
            sc = replace(sc, nfe=None)
        sc = replace(sc, **changes)
        if self.cfg.schedule.discrete and (sc.steps or 0) > self.cfg.schedule.T:
            raise UserError(f"sample.steps must be at most T = {self.cfg.schedule.T}, got {sc.steps}")
        return sc

    def plan(self, sc: SampleConfig, log: Log = print, t_start: float = 1.0) -> SamplingPlan:
        """The sampler, its grid (NFE -> intervals by the sampler's cost model) and the estimated cost; a
        'calibrated' grid is fitted to this model first (samplers/calibrate.py). sample.sampler = auto picks the
        most accurate sampler for the asked NFE (20 if unset) on its default grid (samplers/registry.py). With
        t_start < 1 the grid starts there, for a draw from given images (SDEdit, image-to-image)."""
        if not (0 < t_start <= 1):
            raise UserError(f"the start time t0 must lie in (0, 1], got {t_start:g}")
        chosen, sc = sc.sampler == "auto", resolve_sampler(sc)
        spec = get_sampler(sc.sampler)
        options = spec.options(replace(self.cfg, sample=sc))
        if spec.adaptive:
            grid_name = "uniform" if sc.grid == "auto" else sc.grid
            grid, nfe = make_grid("uniform", self.schedule, 2), None
        else:
            if sc.nfe is not None:
                steps = spec.steps_for_nfe(sc.sampler, sc.nfe, options)
            else:
                steps = sc.steps or spec.default_steps(sc.sampler, self.schedule, options)
            grid_name = spec.grid_for(self.schedule, steps) if sc.grid == "auto" else sc.grid
            if grid_name == "calibrated" and t_start < 1:
                raise UserError("a calibrated grid starts from noise: choose another --grid to start at t0 < 1")
            if grid_name == "calibrated":
                x_cal = NoiseSource.for_indices(sc.seed + 1_000_003, range(CALIBRATION_SAMPLES)).randn(self.shape)
                grid = calibrate_grid(spec, self.denoiser, self.schedule, steps, x_cal.to(self.device),
                                      options=options, log=log)
            else:
                grid = spec.grid(grid_name, self.schedule, steps, t_start)
            nfe = spec.nfe(len(grid) - 1, options)
        per_eval = self.eval_seconds(min(sc.batch_size, sc.num_samples))
        batches = -(-sc.num_samples // sc.batch_size)
        seconds = per_eval * batches * (nfe if nfe is not None else 100)  # rk45: ~100 evaluations, a guess
        return SamplingPlan(sc, spec, grid_name, grid, options, nfe, seconds, chosen)

    def sample(self, n: int | None = None, *, sampler: str | None = None, nfe: int | None = None,
               steps: int | None = None, grid: str | None = None, seed: int | None = None,
               classes: int | str | Sequence[int | str] | None = None, prompts: str | Sequence[str] | None = None,
               cond: Condition | None = None,
               guidance: float | Transform | None = None, classifier: str | Path | None = None,
               guidance_interval: tuple[float, float] | None = None, clip: bool | None = None,
               eta: float | None = None, variance: str | None = None, batch_size: int | None = None,
               log: Log | None = None, progress: bool = False, callback: StepCallback | None = None) -> Tensor:
        """(n, *shape) samples in the data's range, on the CPU. Unset arguments keep the run's sample settings
        (the sampler most accurate at 20 NFE unless the run says otherwise). `classes` cycles labels, `prompts`
        captions (a text-to-image run) over the samples; `cond` gives n rows of any condition instead. `guidance` is a scale (classifier-free guidance of this
        class-conditional run, w = 1 the conditional model; with `classifier` a noise-conditional classifier run:
        classifier guidance, scale 1 the exact Bayes rule) or any denoiser transform, applied before clipping.
        Sample k depends only on (seed, k)."""
        sc = self.sample_config(n, sampler=sampler, nfe=nfe, steps=steps, grid=grid, seed=seed, classes=classes,
                                prompts=tuple(prompts) if prompts is not None and not isinstance(prompts, str)
                                else prompts, clip=clip, eta=eta, variance=variance, batch_size=batch_size)
        if classifier is not None or isinstance(guidance, (int, float)):
            guidance, cond = self.guidance(sc, 1.0 if guidance is None else guidance, classifier=classifier,
                                           interval=guidance_interval, cond=cond)
        return self.draw(self.plan(sc, log or (lambda s: None)), cond=cond, guidance=guidance, log=log,
                         progress=progress, callback=callback)

    def guidance(self, sc: SampleConfig, scale: float, *, classifier: str | Path | None = None,
                 interval: tuple[float, float] | None = None,
                 cond: Condition | None = None) -> tuple[Transform, Condition]:
        """(transform, condition) for sample.classes / sample.prompts (guide.py): classifier guidance with a classifier
        run, else classifier-free guidance of this conditional run."""
        from difflab.guide import guidance_for

        return guidance_for(self, sc, scale, classifier=classifier, interval=interval, cond=cond)

    def draw(self, plan: SamplingPlan, *, cond: Condition | None = None, guidance: Transform | None = None,
             log: Log | None = None, progress: bool = False, callback: StepCallback | None = None,
             init: Tensor | None = None, hook: StepHook | RowHook | None = None,
             sampler: Callable | None = None) -> Tensor:
        """Run a plan: the sampler over its grid, batch by batch; `callback(i, t, x, pred)` sees every step. `init`
        (n images) starts a grid below t = 1 from them noised to its first time; `guidance` is any denoiser transform
        (guidance, a posterior transform reading the condition's measurement field); `hook` a step hook, or a RowHook
        bound to each batch's rows (projection onto per-image measurements); `sampler` replaces the plan's sampler
        function (RePaint's resampling around it). Returns data (a latent run decodes; its `init` is encoded first)."""
        sc = plan.config
        cond = self.condition(sc) if cond is None else cond
        if cond is not None and len(cond) != sc.num_samples:
            raise UserError(f"cond holds {len(cond)} rows for {sc.num_samples} samples")
        counter = CountingDenoiser(self.denoiser)
        guided = guidance(counter) if guidance is not None else counter
        denoiser = self.clipped(guided, sc.clip)
        batches = -(-sc.num_samples // sc.batch_size)
        bar = Progress((len(plan.grid) - 1) * batches, "sample", "step", every=max(1, (len(plan.grid) - 1) // 4),
                       log=log, enabled=progress and log is not None)
        if init is not None and float(plan.grid[0]) >= 1:
            raise UserError("starting from images needs a start time t0 below 1 (at t0 = 1 the images are pure noise: "
                            "draw without them)")
        if init is not None and tuple(init.shape) != (sc.num_samples, *self.data_spec.shape):
            raise UserError(f"starting from images needs {sc.num_samples} images of shape {self.data_spec.shape}, got "
                            f"{tuple(init.shape)}")
        if init is not None:
            init = self.encode(init, sc.seed)
        with torch.no_grad():
            x = generate(denoiser, self.shape, sc.num_samples, self.schedule, plan.grid, seed=sc.seed,
                         batch_size=sc.batch_size, cond=cond, device=self.device, on_step=bar.update,
                         callback=callback, hook=hook, sampler=sampler or plan.spec.fn, init=init,
                         **plan.options)
            x = self.decode(x, sc.seed)
        bar.close()
        per_sample = counter.rows / sc.num_samples
        if log is not None and guidance is not None and plan.nfe and per_sample != plan.nfe:
            log(f"{per_sample:g} network evaluations per sample, {plan.nfe} planned: the transform evaluates the "
                "network more often")
        return x

    def clipped(self, denoiser: Denoiser, clip: bool = True) -> Denoiser:
        """x0_hat clipped to the data's range when it has one and clipping is asked for (DDPM's sampler)."""
        return Clip(denoiser, *self.spec.value_range) if clip and self.spec.value_range is not None else denoiser

    def condition(self, sc: SampleConfig) -> Condition | None:
        """What to sample: each condition kind of the run builds its field from the request (sample.classes cycled,
        sample.prompts cycled or example prompts, ...); a request the run cannot take is refused in one line."""
        for K in KINDS.values():
            if K.asked(sc) and K.name not in self.net.conditions:
                raise UserError(K.missing)
        return joined([k.condition(k.request(sc, sc.num_samples, self.shape), self.shape) for k in self.kinds])

    def eval_seconds(self, batch: int) -> float:
        """Seconds of one network evaluation on `batch` examples (timed, after a warm-up call)."""
        cond = self.condition(replace(self.cfg.sample, num_samples=batch))
        return eval_seconds(self.denoiser, self.shape, batch, self.device,
                            cond.to(self.device) if cond is not None else None, self.clock)

    # -- files --------------------------------------------------------------------------------------------------
    def save_grid(self, x: Tensor, path: str | Path, nrow: int | None = None) -> Path:
        """A PNG of samples: an image grid, or a scatter over the training data for 2-D points (eval/samples.py)."""
        from difflab.eval.samples import sample_figure

        return sample_figure(x, path, self.data_spec, self.cfg.data, nrow)

    def save(self, x: Tensor, out: str | Path, name: str = "samples", classes: Sequence[int] = ()) -> Path:
        """NAME.png (grid: one row per class, labelled, when `classes` were asked) and NAME.npz (uint8 images
        (N, H, W[, C]) or float points (N, D)) in `out`."""
        from difflab.eval.samples import save_samples

        names = self.cfg.data.class_names
        labels = [names[c] if c < len(names) else str(c) for c in (list(classes) * len(x))[:len(x)]] if classes else ()
        return save_samples(x, out, name, self.data_spec, self.cfg.data, labels)

    # -- likelihood ---------------------------------------------------------------------------------------------
    def log_likelihood(self, x: Tensor, *, method: str = "ode", cond: Condition | None = None, rtol: float = 1e-5,
                       num_t: int | None = None, seed: int = 0) -> Tensor:
        """log p(x) per example in nats (eval/likelihood.py): 'ode' the exact likelihood by the probability-flow ODE
        (8-bit data: log P of the pixel bins, by uniform dequantization), 'elbo' the lower bound -(L_0 + sum L_{t-1}
        + L_T) over all T steps, or over num_t importance-sampled steps. Divide by -D ln 2 for bits/dim."""
        from difflab.eval.likelihood import log_likelihood

        return log_likelihood(self, x, method=method, cond=cond, rtol=rtol, num_t=num_t, seed=seed)


def load(path: str | Path, *, schedule: Optional[str] = None, live: bool = False) -> Pipeline:
    """A trained diffusion run (folder or checkpoint.safetensors) as a Pipeline; `schedule` samples on another
    schedule's noise levels (the network sees only sigma~), `live` uses the live weights instead of the EMA. A diffusers
    folder (save_pretrained's, a UNet2DModel) loads as a run too (interop/diffusers_folder.py)."""
    from difflab.interop.diffusers_folder import is_diffusers_folder

    if is_diffusers_folder(path):
        from difflab.interop.diffusers_runs import load_diffusers

        run = load_diffusers(path)
    else:
        run = load_run(path)
    if schedule is not None:
        if schedule not in SCHEDULES:
            raise UserError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if run.cfg.train.noise_input == "steps" and schedule != run.cfg.schedule.kind:
            raise UserError("this network reads its own beta table's step index (train.noise_input=steps, a diffusers "
                            "model): it samples on its own schedule; drop --schedule")
        run = replace(run, cfg=replace(run.cfg, schedule=replace(run.cfg.schedule, kind=schedule)))
    return Pipeline(run, use_ema=not live)
