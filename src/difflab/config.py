"""Typed, frozen run configuration; YAML in and out, strict about unknown keys and bad values."""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from difflab.data.dataset import DataConfig
from difflab.errors import UserError
from difflab.vae import VAEConfig
from difflab.losses.objective import OBJECTIVES
from difflab.nn.classifier import ClassifierConfig
from difflab.nn.mlp import MLPConfig
from difflab.conditions.text import TextConfig
from difflab.nn.unet import UNetConfig
from difflab.precond import NOISE_INPUTS, Parameterization
from difflab.reverse import SAMPLING_VARIANCES
from difflab.schedules.config import ScheduleConfig

PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # train.precision: the network's autocast dtype (train/precision.py)


@dataclass(frozen=True)
class TrainConfig:
    """Algorithm 1 with AdamW, warm-up, clipping and EMA; amounts counted in images, not steps."""

    parameterization: str = "eps"  # what the network's output is: eps, x0, score, v, or edm (EDM's F, with sigma_data)
    noise_input: str = "vp_time"  # the network's noise input: vp_time (t_VP(sigma~), EDM's VP choice) or steps (the table's step index i - 1, as diffusers trains: imported models)
    objective: str = "simple"  # simple (Algorithm 1), elbo (the bound's own weights), hybrid (simple + w * elbo), edm
    sigma_data: float = 0.5  # edm parameterization and objective: the data's standard deviation
    edm_p_mean: float = -1.2  # edm objective: mean of ln sigma~ for training noise levels
    edm_p_std: float = 1.2  # edm objective: standard deviation of ln sigma~
    cond_dropout: float = 0.0  # class-conditional: probability an example trains with the null label instead
    continuous_levels: bool = False  # discrete tables: train at t ~ U[1/T, 1] between the steps (log-SNR interpolated)
    learn_variance: bool = False  # the network also predicts the reverse variance (needs elbo or hybrid)
    hybrid_weight: float = 1e-3  # weight of the ELBO part of the hybrid objective
    batch_size: int = 64  # images per optimisation step
    lr: float = 2e-4  # peak AdamW learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    warmup_images: Optional[int] = None  # linear learning-rate warm-up (unset: 5% of the run's planned images, <= 5000)
    grad_clip: float = 1.0  # clip the global gradient norm to this (0 = off)
    ema_half_life_images: Optional[int] = None  # EMA half-life; beta = 0.5 ** (batch / half-life) (unset: 10% of the
    # run's planned images, at most 50000; planned = max_images, or what --minutes allows at the measured speed)
    ema_rampup: float = 0.1  # early on, half-life = min(half-life, ema_rampup * images seen); 0 = off
    max_images: int = 1_000_000  # stop after this many training images
    minutes: float = 0.0  # wall-clock budget of the command, sampling after training included (0 = no limit); a
    # resumed run's budget is its total: training stops early enough for the work that follows
    checkpoint_every_images: int = 50000  # write a checkpoint this often (and at the end)
    keep_checkpoints: int = 3  # checkpoints/ keeps this many (checkpoint.safetensors is always the newest)
    log_every: int = 50  # steps between metric lines
    seed: int = 0  # seeds data order, t, eps and dropout, step by step
    device: str = "auto"  # auto (cuda if available, else cpu), cpu, cuda or cuda:N (under torchrun: each rank's GPU)
    grad_accum: int = 1  # micro-batches per step: batch_size is split over ranks, then into grad_accum parts
    precision: str = "fp32"  # fp32, bf16 (autocast), fp16 (autocast + dynamic loss scaling; for GPUs), auto (bf16 where native)
    compile: bool = False  # torch.compile the network for training
    max_bad_steps: int = 10  # a step with a non-finite loss or gradient is skipped; this many in a row stop the run
    tensorboard: bool = True  # also write TensorBoard event files to RUN/tb

    def __post_init__(self) -> None:
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise UserError(f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        Parameterization(self.parameterization, self.sigma_data)  # validates both
        if self.noise_input not in NOISE_INPUTS:
            raise UserError(f"train.noise_input must be one of {NOISE_INPUTS}, got {self.noise_input!r}")
        if not 0 <= self.cond_dropout < 1:
            raise UserError(f"train.cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.objective not in OBJECTIVES:
            raise UserError(f"train.objective must be one of {tuple(OBJECTIVES)}, got {self.objective!r}")
        if self.continuous_levels and OBJECTIVES[self.objective].needs_table:
            raise UserError("train.continuous_levels needs objective simple or edm: the ELBO's terms sit on the table's "
                            "integer steps")
        if self.edm_p_std <= 0:
            raise UserError(f"train.edm_p_std must be positive, got {self.edm_p_std}")
        if self.learn_variance and not OBJECTIVES[self.objective].needs_table:
            raise UserError("train.learn_variance needs train.objective elbo or hybrid: the simple loss "
                            "does not see the variance")
        if self.precision not in PRECISIONS:
            raise UserError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.grad_accum < 1 or self.batch_size % self.grad_accum:
            raise UserError(f"train.grad_accum must be at least 1 and divide train.batch_size={self.batch_size}, "
                            f"got {self.grad_accum}")
        _nonnegative(self, "hybrid_weight")
        _positive(self, "keep_checkpoints", "max_bad_steps")
        _positive(self, "batch_size", "lr", "max_images", "checkpoint_every_images", "log_every")
        _nonnegative(self, "weight_decay", "grad_clip", "minutes", "ema_rampup")
        if self.warmup_images is not None and self.warmup_images < 0:
            raise UserError(f"train.warmup_images must be >= 0, got {self.warmup_images}")
        if self.ema_half_life_images is not None and self.ema_half_life_images <= 0:
            raise UserError(f"train.ema_half_life_images must be positive, got {self.ema_half_life_images}")


@dataclass(frozen=True)
class SampleConfig:
    """How to sample: which sampler, at what cost (NFE or grid steps), how many, from which seed."""

    num_samples: int = 64  # images to generate
    sampler: str = "auto"  # auto (the most accurate at the NFE), ancestral (Algorithm 2), ddim, euler_maruyama, pc, langevin, heun, rk45, dpmpp_2m, dpmpp_3m, dpmpp_pc, edm
    nfe: Optional[int] = None  # network evaluations per sample; sets the grid size (unset: the sampler's default budget)
    steps: Optional[int] = None  # grid intervals instead of nfe; 1..T on a discrete schedule (unset: from nfe)
    grid: str = "auto"  # uniform, karras, logsnr, focus, stable, discrete, calibrated (fitted to the model), auto (usual one)
    eta: float = 0.0  # ddim: 0 deterministic, 1 ancestral
    variance: str = "auto"  # ancestral sigma_t^2: posterior, beta, learned, analytic, or auto (learned if trained, else analytic)
    clip: bool = True  # clip predicted x0 to the data's range (images only; 2-D data is never clipped)
    use_ema: bool = True  # sample from the EMA weights
    batch_size: int = 256  # samples per network call (results do not depend on it)
    seed: int = 0  # sample k uses its own noise stream from (seed, k)
    classes: tuple[int, ...] = ()  # class-conditional: labels to sample, cycled, e.g. [3,7] (empty: null label if
    # trained with train.cond_dropout > 0, else sample k gets class k mod C)
    prompts: tuple[str, ...] = ()  # text-to-image: captions to sample, cycled (empty: example prompts of the captions)

    def __post_init__(self) -> None:
        if self.variance not in SAMPLING_VARIANCES + ("auto",):
            raise UserError(f"sample.variance must be auto or one of {SAMPLING_VARIANCES}, got {self.variance!r}")
        from difflab.samplers.registry import get_sampler
        from difflab.schedules.grids import GRIDS

        try:
            if self.sampler != "auto":
                get_sampler(self.sampler)
        except UserError as e:
            raise UserError(f"sample.{e}") from None
        if self.grid not in GRIDS + ("auto", "calibrated"):
            raise UserError(f"sample.grid must be auto, calibrated or one of {GRIDS}, got {self.grid!r}")
        for name in ("nfe", "steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"sample.{name} must be a positive integer, got {getattr(self, name)}; leave it unset "
                                "for the sampler's default budget")
        if self.nfe is not None and self.steps is not None:
            raise UserError(f"set one of sample.nfe ({self.nfe}) and sample.steps ({self.steps}): both size the grid")
        _positive(self, "num_samples", "batch_size")
        if not 0 <= self.eta <= 1:
            raise UserError(f"sample.eta must lie in [0, 1] (0: deterministic DDIM, 1: ancestral), got {self.eta:g}")


MODELS = ("diffusion", "vae", "classifier")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; written next to its checkpoint."""

    model: str = "diffusion"  # what is trained: diffusion, vae (an autoencoder by its ELBO) or classifier (p(y | x_t, t))
    arch: str = "unet"  # diffusion network: unet (images) or mlp (2-D / tabular)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    text: TextConfig = field(default_factory=TextConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    conditions: tuple[str, ...] = ()  # further condition kinds by registered name (label, caption, lowres follow unet.num_classes, text.encoder, unet.lowres_factor)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(self.conditions))
        if self.model not in MODELS:
            raise UserError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.arch not in ("unet", "mlp"):
            raise UserError(f"arch must be 'unet' or 'mlp', got {self.arch!r}")
        if self.text.enabled and (self.model, self.arch) != ("diffusion", "unet"):
            raise UserError(f"text.encoder={self.text.encoder} conditions the U-Net of a diffusion model, not "
                            f"model={self.model} arch={self.arch}: drop text.encoder or set arch=unet")
        if self.model != "diffusion":
            return
        if not self.schedule.discrete and (OBJECTIVES[self.train.objective].needs_table or self.train.learn_variance):
            raise UserError(f"train.objective={self.train.objective} and learn_variance need a discrete schedule "
                            f"(linear or cosine): the ELBO is a sum over steps; schedule.kind={self.schedule.kind} "
                            "trains by denoising score matching (objective simple)")
        if self.train.noise_input == "steps" and not self.schedule.discrete:
            raise UserError(f"train.noise_input=steps reads a beta table's step index: it needs a discrete schedule "
                            f"(linear, scaled_linear or cosine), not schedule.kind={self.schedule.kind}")
        if self.schedule.discrete and (self.sample.steps or 0) > self.schedule.T:
            raise UserError(f"sample.steps must be at most schedule.T = {self.schedule.T}, got {self.sample.steps}")
        if self.sample.variance == "learned" and not self.train.learn_variance:
            raise UserError("sample.variance=learned needs a model trained with train.learn_variance=true")

    @property
    def variance(self) -> str:
        """The reverse variance of the bound (the ELBO's Gaussian p_theta): sample.variance, with auto resolved, and
        analytic (a sampler's, which depends on each sample) read as posterior."""
        if self.sample.variance not in ("auto", "analytic"):
            return self.sample.variance
        return "learned" if self.train.learn_variance else "posterior"

    @property
    def sampling_variance(self) -> str:
        """The reverse variance ancestral sampling draws with: sample.variance, auto = learned if trained, else
        analytic (the posterior variance plus x_0's spread: right at any stride, reverse.analytic_var)."""
        if self.sample.variance != "auto":
            return self.sample.variance
        return "learned" if self.train.learn_variance else "analytic"


def _positive(cfg: Any, *names: str) -> None:
    for n in names:
        if not getattr(cfg, n) > 0:
            raise UserError(f"{_section(cfg)}.{n} must be positive, got {getattr(cfg, n)}")


def _nonnegative(cfg: Any, *names: str) -> None:
    for n in names:
        if getattr(cfg, n) < 0:
            raise UserError(f"{_section(cfg)}.{n} must be >= 0, got {getattr(cfg, n)}")


def _section(cfg: Any) -> str:
    return {TrainConfig: "train", SampleConfig: "sample"}.get(type(cfg), type(cfg).__name__)


# -- dict <-> dataclass ---------------------------------------------------------------------------------
def to_dict(cfg: Any) -> dict:
    """A plain dict (tuples as lists) for YAML / JSON."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = to_dict(v) if dataclasses.is_dataclass(v) else list(v) if isinstance(v, tuple) else v
    return out


def from_dict(cls: type, d: dict, prefix: str = "") -> Any:
    """Build a config dataclass from a dict, refusing unknown keys and ill-typed values."""
    if not isinstance(d, dict):
        raise UserError(f"config section {prefix.rstrip('.') or 'root'} must be a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserError(f"unknown config key {prefix}{unknown[0]}; known keys here: {', '.join(sorted(names))}")
    kwargs = {}
    for k, v in d.items():
        kwargs[k] = _coerce(hints[k], v, prefix + k)
    return cls(**kwargs)


def coerce_fields(cls: type, values: dict, section: str) -> dict:
    """Python-side values for fields of the dataclass `cls` checked and converted as a config file's are (a bad one:
    a UserError naming section.field)."""
    hints = typing.get_type_hints(cls)
    unknown = [k for k in values if k not in hints]
    if unknown:
        raise UserError(f"unknown {section} setting(s) {', '.join(unknown)}: choose from {', '.join(hints)}")
    return {k: _coerce(hints[k], v, f"{section}.{k}") for k, v in values.items()}


def _coerce(tp: Any, v: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, v if v is not None else {}, key + ".")
    origin = typing.get_origin(tp)
    if origin is Union:  # Optional[X]: null (unset) or an X
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return None if v is None else _coerce(inner, v, key)
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise UserError(f"config key {key} must be a list like [1,2] (on the command line: --set {key}=[1,2]), "
                            f"got {v!r}")
        return tuple(_coerce(typing.get_args(tp)[0], x, key) for x in v)
    if tp is bool:
        if not isinstance(v, bool):
            raise UserError(f"config key {key} must be true or false, got {v!r}")
        return v
    if tp in (int, float) and isinstance(v, str):
        try:
            v = float(v)  # YAML 1.1 reads 2e-3 as a string
        except ValueError:
            kind = "an integer" if tp is int else "a number"
            raise UserError(f"config key {key} must be {kind}, got {v!r}") from None
    if tp is int:
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
            raise UserError(f"config key {key} must be an integer, got {v!r}")
        return int(v)
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise UserError(f"config key {key} must be a finite number, got {v!r}")
        return float(v)
    if tp is str:
        if not isinstance(v, str):
            raise UserError(f"config key {key} must be a string, got {v!r}")
        return v
    return v


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping (safe loader only)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {p} does not exist: pass an existing YAML file to --config")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"config file {p} is not valid YAML ({str(e).splitlines()[0]}): fix its syntax") from None
    if not isinstance(d, dict):
        raise UserError(f"config file {p} must hold a mapping of sections (data:, train:, ...)")
    return d


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings (values parsed as YAML) onto a nested dict."""
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} must look like section.key=value, e.g. train.lr=1e-3")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = d
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r}: {p} is not a section")
        node[leaf] = value
    return d


def merge(base: dict, extra: dict) -> dict:
    """Deep-merge `extra` onto `base` (extra wins)."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def upgrade(d: dict) -> dict:
    """A config saved by an earlier difflab, in today's terms: sample.nfe / sample.steps 0 meant unset."""
    sample = d.get("sample")
    if isinstance(sample, dict):
        d = {**d, "sample": {k: (None if k in ("nfe", "steps") and v == 0 else v) for k, v in sample.items()}}
    return d


def build_config(yaml_path: str | None = None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    """Defaults <- base dict <- YAML file <- overrides, validated into a RunConfig."""
    d = merge(base or {}, load_yaml(yaml_path) if yaml_path else {})
    return from_dict(RunConfig, apply_overrides(d, list(overrides)))


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
