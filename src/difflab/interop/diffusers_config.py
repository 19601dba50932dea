"""diffusers' configs <-> difflab's: a UNet2DModel config and a DDPM-family scheduler config as a RunConfig (each
field mapped, anything that changes what the network computes refused in one line naming it), and the configs that
make a difflab U-Net run a UNet2DModel and a DDPMScheduler (docs/diffusers.md has the table)."""
from __future__ import annotations

import torch

from difflab.config import RunConfig, SampleConfig, TrainConfig
from difflab.data.dataset import DataConfig, DataSpec
from difflab.errors import UserError
from difflab.nn.unet import UNetConfig
from difflab.schedules.config import ScheduleConfig

FORMAT_VERSION = "0.42.1"  # the diffusers release whose format is written (and tested against)
PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
VARIANCES = {"fixed_small": "posterior", "fixed_small_log": "posterior", "fixed_large": "beta",
             "fixed_large_log": "beta", "learned_range": "learned"}
# schedulers that are a DDPM beta table plus a sampling rule: difflab reads the table and brings its own samplers
TABLE_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler",
                    "DPMSolverSinglestepScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
                    "HeunDiscreteScheduler", "LMSDiscreteScheduler", "UniPCMultistepScheduler",
                    "DEISMultistepScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
                    "DDPMParallelScheduler", "DDIMParallelScheduler", "TCDScheduler", "LCMScheduler")
# UNet2DModel fields and the only values difflab's U-Net computes (None: read by the mapping itself)
UNET_FIXED = {"center_input_sample": False, "time_embedding_type": "positional", "mid_block_type": "UNetMidBlock2D",
              "mid_block_scale_factor": 1, "downsample_padding": 1, "downsample_type": "conv",
              "upsample_type": "conv", "act_fn": "silu", "add_attention": True, "class_embed_type": None}
UNET_READ = ("sample_size", "in_channels", "out_channels", "time_embedding_dim", "freq_shift", "flip_sin_to_cos",
             "down_block_types", "up_block_types", "block_out_channels", "layers_per_block", "dropout",
             "attention_head_dim", "norm_num_groups", "attn_norm_num_groups", "norm_eps", "resnet_time_scale_shift",
             "num_class_embeds", "num_train_timesteps")
DOWN, UP = ("DownBlock2D", "AttnDownBlock2D"), ("UpBlock2D", "AttnUpBlock2D")


# -- config: diffusers -> difflab ------------------------------------------------------------------------------
def unet_config(c: dict, where: str) -> tuple[UNetConfig, int, bool]:
    """(the U-Net config, the class count, whether the net also predicts the variance) of a UNet2DModel config."""
    name = c.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise UserError(f"{where}: _class_name is {name}; difflab imports UNet2DModel (an unconditional or "
                        f"class-conditional image U-Net), not a text-conditioned or other network")
    unknown = sorted(k for k in c if not k.startswith("_") and k not in UNET_FIXED and k not in UNET_READ)
    if unknown:
        raise UserError(f"{where}: field {unknown[0]} is not one difflab can map onto its U-Net")
    for k, v in UNET_FIXED.items():
        if k in c and c[k] != v and not (k == "mid_block_scale_factor" and c[k] == 1.0):
            raise UserError(f"{where}: {k} = {c[k]!r} is not supported (difflab's U-Net computes {k} = {v!r})")
    down, up = tuple(c.get("down_block_types", ())), tuple(c.get("up_block_types", ()))
    widths = tuple(int(w) for w in c.get("block_out_channels", ()))
    if not widths or len(down) != len(widths) or len(up) != len(widths):
        raise UserError(f"{where}: block_out_channels, down_block_types and up_block_types must have one entry per level")
    for types, allowed, field in ((down, DOWN, "down_block_types"), (up, UP, "up_block_types")):
        bad = [t for t in types if t not in allowed]
        if bad:
            raise UserError(f"{where}: {field} has {bad[0]}; difflab maps {' and '.join(allowed)}")
    attn = tuple(lv for lv, t in enumerate(down) if t.startswith("Attn"))
    if attn != tuple(lv for lv, t in enumerate(reversed(up)) if t.startswith("Attn")):
        raise UserError(f"{where}: down_block_types and up_block_types put attention at different levels; difflab's "
                        "U-Net has it at the same levels both ways")
    base = widths[0]
    if any(w % base for w in widths):
        raise UserError(f"{where}: block_out_channels {list(widths)} must be multiples of the first")
    if c.get("time_embedding_dim") not in (None, 4 * base):
        raise UserError(f"{where}: time_embedding_dim = {c['time_embedding_dim']} is not supported (difflab uses "
                        f"4 x block_out_channels[0] = {4 * base})")
    shift = c.get("resnet_time_scale_shift", "default")
    if shift not in ("default", "scale_shift"):
        raise UserError(f"{where}: resnet_time_scale_shift = {shift!r} is not supported (default or scale_shift)")
    groups = int(c.get("norm_num_groups", 32) or 32)
    attn_groups = c.get("attn_norm_num_groups")
    if shift == "scale_shift" and attn_groups is None or attn_groups not in (None, groups):
        raise UserError(f"{where}: attn_norm_num_groups = {attn_groups} gives the middle attention another "
                        f"normalization than difflab's ({groups} groups, as norm_num_groups)")
    head_dim = c.get("attention_head_dim", 8)
    if isinstance(head_dim, (list, tuple)):
        raise UserError(f"{where}: attention_head_dim per level is not supported: one value or null")
    inputs, outputs = int(c.get("in_channels", 3)), int(c.get("out_channels", 3))
    if outputs not in (inputs, 2 * inputs):
        raise UserError(f"{where}: out_channels = {outputs} must equal in_channels ({inputs}), or twice it with a "
                        "learned variance")
    classes = int(c.get("num_class_embeds") or 0)
    cfg = UNetConfig(in_channels=inputs, base_channels=base, channel_mult=tuple(w // base for w in widths),
                     num_res_blocks=int(c.get("layers_per_block", 2)), attention_levels=attn, heads=1,
                     head_dim=int(head_dim) if head_dim else 0, dropout=float(c.get("dropout", 0.0)),
                     scale_shift=shift == "scale_shift", num_classes=classes, groups=groups,
                     norm_eps=float(c.get("norm_eps", 1e-5)),
                     time_order="cos_sin" if c.get("flip_sin_to_cos", True) else "sin_cos",
                     freq_shift=float(c.get("freq_shift", 0)))
    return cfg, classes, outputs == 2 * inputs


def schedule_config(s: dict, where: str) -> tuple[ScheduleConfig, str, str, bool]:
    """(the beta table, the parameterization, the reverse variance, clip) of a DDPM-family scheduler config."""
    name = s.get("_class_name", "DDPMScheduler")
    if name not in TABLE_SCHEDULERS:
        raise UserError(f"{where}: _class_name {name} is not a DDPM beta-table scheduler difflab can read (one of "
                        f"DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, ...)")
    kind = BETA_SCHEDULES.get(s.get("beta_schedule", "linear"))
    if kind is None:
        raise UserError(f"{where}: beta_schedule = {s.get('beta_schedule')!r} is not supported ({', '.join(BETA_SCHEDULES)})")
    if s.get("trained_betas") is not None:
        raise UserError(f"{where}: trained_betas (an explicit beta list) is not supported: linear, scaled_linear or "
                        "squaredcos_cap_v2")
    if s.get("rescale_betas_zero_snr"):
        raise UserError(f"{where}: rescale_betas_zero_snr = true is not supported (its last step has zero SNR)")
    pred = PREDICTIONS.get(s.get("prediction_type", "epsilon"))
    if pred is None:
        raise UserError(f"{where}: prediction_type = {s.get('prediction_type')!r} is not supported "
                        f"({', '.join(PREDICTIONS)})")
    variance = VARIANCES.get(s.get("variance_type") or "fixed_small")
    if variance is None:
        raise UserError(f"{where}: variance_type = {s.get('variance_type')!r} is not supported ({', '.join(VARIANCES)})")
    clip = bool(s.get("clip_sample", True))
    if clip and float(s.get("clip_sample_range", 1.0)) != 1.0:
        raise UserError(f"{where}: clip_sample_range = {s['clip_sample_range']} is not supported: difflab clips "
                        "to the data's range [-1, 1]")
    sched = ScheduleConfig(kind=kind, T=int(s.get("num_train_timesteps", 1000)),
                           **({"beta_1": float(s.get("beta_start", 1e-4)), "beta_T": float(s.get("beta_end", 0.02))}
                              if kind != "cosine" else {}))
    return sched, pred, variance, clip


def foreign_config(unet: dict, sched: dict, data: DataConfig, where: str) -> tuple[RunConfig, DataSpec]:
    """The run config and data description of a diffusers UNet2DModel and its scheduler."""
    ucfg, classes, learned = unet_config(unet, f"{where}/unet/config.json")
    scfg, pred, variance, clip = schedule_config(sched, f"{where}/scheduler/scheduler_config.json")
    if learned != (variance == "learned"):
        raise UserError(f"{where}: out_channels = {unet.get('out_channels')} and variance_type = "
                        f"{sched.get('variance_type')!r} disagree: twice the channels means learned_range")
    size = unet.get("sample_size")
    if size is None:
        raise UserError(f"{where}/unet/config.json: sample_size is missing: difflab needs the image size")
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h % ucfg.factor or w % ucfg.factor:
        raise UserError(f"{where}: sample_size {h}x{w} is not divisible by {ucfg.factor} = 2^(levels-1)")
    train = TrainConfig(parameterization=pred, noise_input="steps", learn_variance=learned,
                        objective="hybrid" if learned else "simple")
    cfg = RunConfig(data=data, schedule=scfg, unet=ucfg, train=train,
                    sample=SampleConfig(variance=variance, clip=clip))
    return cfg, DataSpec((ucfg.in_channels, h, w), quantized=True, value_range=(-1.0, 1.0), num_classes=classes)



# -- config: difflab -> diffusers ----------------------------------------------------------------------------
def exportable(cfg: RunConfig, spec: DataSpec) -> None:
    """Refuse, in one line, a run UNet2DModel cannot compute."""
    why = None
    if cfg.model != "diffusion" or cfg.arch != "unet":
        why = f"it is model={cfg.model} arch={cfg.arch}, not a diffusion U-Net"
    elif cfg.text.enabled:
        why = "it is text-conditioned (UNet2DModel has no cross-attention; diffusers' UNet2DConditionModel is another network)"
    elif cfg.unet.lowres_factor:
        why = "it is a super-resolution model (UNet2DModel takes no low-resolution input)"
    elif cfg.data.latent or spec.space != "pixel":
        why = "it is a latent diffusion model (its autoencoder has no diffusers counterpart here)"
    elif cfg.conditions:
        why = f"it takes the condition(s) {', '.join(cfg.conditions)}"
    elif not cfg.schedule.discrete:
        why = f"its schedule is the SDE {cfg.schedule.kind}; DDPMScheduler needs a beta table (linear, cosine)"
    elif cfg.train.parameterization not in ("eps", "x0", "v"):
        why = f"its network predicts {cfg.train.parameterization}; diffusers knows epsilon, sample and v_prediction"
    elif spec.value_range != (-1.0, 1.0):
        why = f"its data range is {spec.value_range}; diffusers' pipelines take images in [-1, 1]"
    if why:
        raise UserError(f"this run cannot become a diffusers UNet2DModel: {why}")


def attention_head_dim(u: UNetConfig) -> int | None:
    """diffusers' attention_head_dim of difflab's heads (None: one head at every level)."""
    if u.head_dim:
        return u.head_dim
    if u.heads == 1:
        return None
    widths = {u.base_channels * u.channel_mult[lv] for lv in u.attention_levels} | \
        {u.base_channels * u.channel_mult[-1]}
    if len(widths) > 1:
        raise UserError(f"this run cannot become a diffusers UNet2DModel: unet.heads={u.heads} at attention widths "
                        f"{sorted(widths)} are heads of different sizes; diffusers has one attention_head_dim")
    return widths.pop() // u.heads


def diffusers_unet_config(cfg: RunConfig, spec: DataSpec, net: torch.nn.Module) -> dict:
    u = cfg.unet
    groups = {m.num_groups for m in net.modules() if isinstance(m, torch.nn.GroupNorm)}
    if groups != {u.groups}:
        raise UserError(f"this run cannot become a diffusers UNet2DModel: its GroupNorms have {sorted(groups)} "
                        f"groups; diffusers uses norm_num_groups ({u.groups}) at every width")
    levels = len(u.channel_mult)
    c = {"_class_name": "UNet2DModel", "_diffusers_version": FORMAT_VERSION,
         "sample_size": list(spec.shape[1:]) if spec.shape[1] != spec.shape[2] else spec.shape[1],
         "in_channels": u.in_channels, "out_channels": u.in_channels * (2 if cfg.train.learn_variance else 1),
         "center_input_sample": False, "flip_sin_to_cos": u.time_order == "cos_sin", "freq_shift": u.freq_shift,
         "down_block_types": [DOWN[lv in u.attention_levels] for lv in range(levels)],
         "up_block_types": [UP[lv in u.attention_levels] for lv in reversed(range(levels))],
         "block_out_channels": [u.base_channels * m for m in u.channel_mult], "layers_per_block": u.num_res_blocks,
         "mid_block_scale_factor": 1, "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv",
         "dropout": u.dropout, "act_fn": "silu", "attention_head_dim": attention_head_dim(u),
         "norm_num_groups": u.groups, "attn_norm_num_groups": u.groups, "norm_eps": u.norm_eps,
         "resnet_time_scale_shift": "scale_shift" if u.scale_shift else "default", "add_attention": True,
         "class_embed_type": None, "num_class_embeds": u.num_classes + 1 if u.num_classes else None}
    if cfg.train.noise_input == "steps":
        c.update(time_embedding_type="positional")
    else:  # difflab's features of t_VP(sigma~) at each integer timestep, as a table diffusers looks up
        c.update(time_embedding_type="learned", num_train_timesteps=cfg.schedule.T)
    return c


def scheduler_config(cfg: RunConfig) -> dict:
    sc = cfg.schedule
    betas = {"linear": ("linear", sc.beta_1, sc.beta_T), "scaled_linear": ("scaled_linear", sc.beta_1, sc.beta_T),
             "cosine": ("squaredcos_cap_v2", 1e-4, 0.02)}[sc.kind]
    variance = "learned_range" if cfg.train.learn_variance else \
        "fixed_large" if cfg.sample.variance == "beta" else "fixed_small"
    return {"_class_name": "DDPMScheduler", "_diffusers_version": FORMAT_VERSION, "num_train_timesteps": sc.T,
            "beta_schedule": betas[0], "beta_start": betas[1], "beta_end": betas[2], "trained_betas": None,
            "prediction_type": {v: k for k, v in PREDICTIONS.items()}[cfg.train.parameterization],
            "variance_type": variance, "clip_sample": cfg.sample.clip, "clip_sample_range": 1.0,
            "thresholding": False, "timestep_spacing": "leading", "steps_offset": 0,
            "rescale_betas_zero_snr": False}
