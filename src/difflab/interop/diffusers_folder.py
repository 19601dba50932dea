"""diffusers' folder format, both ways: a `save_pretrained` folder (model_index.json, unet/config.json +
diffusion_pytorch_model.safetensors, scheduler/scheduler_config.json) holding a UNet2DModel becomes a difflab run,
and a difflab U-Net run becomes such a folder that DDPMPipeline.from_pretrained loads.

Read with json and safetensors alone (diffusers itself is not imported; a pickled .bin is never opened). The mapping
is field by field (docs/diffusers.md; configs in diffusers_config.py, weights in diffusers_weights.py):
  the beta table      scheduler beta_schedule / beta_start / beta_end / num_train_timesteps -> schedule.kind, T
  what the net says   prediction_type epsilon / sample / v_prediction -> train.parameterization eps / x0 / v
  its noise input     the integer timestep t = i - 1 of the table's step i -> train.noise_input=steps (precond.py)
  the U-Net           block_out_channels, layers_per_block, Attn* blocks, attention_head_dim, norm_num_groups,
                      norm_eps, resnet_time_scale_shift, flip_sin_to_cos, freq_shift, num_class_embeds -> unet.*
Anything else that changes the function the network computes is refused in one line naming the field.

A difflab run trained on its own noise input (t_VP(sigma~)) exports with diffusers' `learned` time embedding: a table
holding difflab's sinusoidal features at each integer timestep, so diffusers' integer-timestep schedulers call the
very same network. difflab_run.json beside model_index.json keeps the run's config, so importing the folder back
gives the run itself.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from difflab.config import RunConfig, from_dict, to_dict, upgrade
from difflab.data.dataset import NO_DATA, DataConfig, DataSpec
from difflab.errors import UserError
from difflab.interop.diffusers_config import FORMAT_VERSION, diffusers_unet_config, exportable, foreign_config, \
    scheduler_config
from difflab.interop.diffusers_weights import time_table, to_difflab, to_diffusers

WEIGHTS = "diffusion_pytorch_model.safetensors"
PICKLED = "diffusion_pytorch_model.bin"
DIFFLAB_RUN = "difflab_run.json"  # an exported run's own config: importing the folder back gives the run itself


def _json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not readable JSON ({e}): the folder is damaged") from None
    if not isinstance(d, dict):
        raise UserError(f"{path} must hold a JSON object")
    return d


def is_diffusers_folder(path: str | Path) -> bool:
    """A save_pretrained folder (model_index.json, or unet/config.json, or a UNet folder's own config.json)."""
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in ("model_index.json", "unet/config.json")) or \
        (p / "config.json").is_file() and _json(p / "config.json").get("_class_name") == "UNet2DModel"


def find_parts(root: str | Path) -> tuple[Path, Path | None]:
    """(the UNet's folder, the scheduler's config or None) of a pipeline folder or a bare UNet folder."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder: pass a diffusers folder written by save_pretrained")
    if (root / "unet" / "config.json").is_file():
        unet, sched = root / "unet", root / "scheduler" / "scheduler_config.json"
    elif (root / "config.json").is_file():
        unet, sched = root, root.parent / "scheduler" / "scheduler_config.json"
    else:
        raise UserError(f"{root} is not a diffusers model folder: it has neither unet/config.json nor config.json "
                        "(write one with save_pretrained)")
    return unet, sched if sched.is_file() else None


# -- reading a folder --------------------------------------------------------------------------------------------
def read_weights(unet_dir: Path) -> dict[str, Tensor]:
    """The UNet's safetensors weights; a pickled .bin alone is refused, never opened."""
    f = unet_dir / WEIGHTS
    if not f.is_file():
        if (unet_dir / PICKLED).is_file():
            raise UserError(f"{unet_dir} holds only {PICKLED}, a pickle, which difflab never opens: convert it to "
                            f"{WEIGHTS} (save_pretrained(..., safe_serialization=True)) where you trust the file")
        raise UserError(f"{unet_dir} has no {WEIGHTS}: the model's weights are missing")
    try:
        return load_file(str(f))
    except (SafetensorError, OSError) as e:
        raise UserError(f"{f} is not a readable safetensors file ({str(e)[:80]})") from None


def read_folder(root: str | Path, data: DataConfig | None = None) -> tuple[RunConfig, DataSpec, dict[str, Tensor]]:
    """A diffusers folder as (run config, data description, difflab U-Net weights)."""
    root = Path(root)
    unet_dir, sched_path = find_parts(root)
    unet = _json(unet_dir / "config.json")
    own = root / DIFFLAB_RUN
    if own.is_file():  # exported by difflab: the run's own config and data description
        saved = _json(own)
        try:
            cfg = from_dict(RunConfig, upgrade(saved["config"]))
            spec = DataSpec.from_dict(saved["data"])
        except (KeyError, TypeError, UserError) as e:
            raise UserError(f"{own} is not a difflab export's record ({e}): delete it to import the folder as "
                            "diffusers wrote it") from None
        cfg = replace(cfg, data=data) if data is not None else cfg
        state = to_difflab(read_weights(unet_dir), cfg.unet, cfg.unet.num_classes, str(unet_dir))
        return cfg, spec, state
    if sched_path is None:
        raise UserError(f"{root} has no scheduler/scheduler_config.json: difflab reads the beta table from it")
    cfg, spec = foreign_config(unet, _json(sched_path), data or DataConfig(name=NO_DATA), str(root))
    return cfg, spec, to_difflab(read_weights(unet_dir), cfg.unet, spec.num_classes, str(unet_dir))


# -- writing a folder --------------------------------------------------------------------------------------------
def write_folder(pipe, out: str | Path) -> Path:
    """A DDPMPipeline folder of a difflab Pipeline (its EMA weights, or live with load(live=True))."""
    cfg, spec = pipe.cfg, pipe.spec
    exportable(cfg, spec)
    unet = diffusers_unet_config(cfg, spec, pipe.net)
    state = to_diffusers(pipe.net.state_dict(), cfg.unet)
    if unet["time_embedding_type"] == "learned":
        state["time_proj.weight"] = time_table(cfg, pipe.denoiser).contiguous()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty: choose a new --out folder")
    tmp = out.with_name(f".{out.name}.partial")
    for d in (tmp / "unet", tmp / "scheduler"):
        d.mkdir(parents=True, exist_ok=True)
    save_file(state, str(tmp / "unet" / WEIGHTS), metadata={"format": "pt"})
    (tmp / "unet" / "config.json").write_text(json.dumps(unet, indent=2) + "\n")
    (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config(cfg), indent=2) + "\n")
    (tmp / "model_index.json").write_text(json.dumps(
        {"_class_name": "DDPMPipeline", "_diffusers_version": FORMAT_VERSION, "scheduler": ["diffusers", "DDPMScheduler"],
         "unet": ["diffusers", "UNet2DModel"]}, indent=2) + "\n")
    (tmp / DIFFLAB_RUN).write_text(json.dumps({"config": to_dict(cfg), "data": spec.to_dict()}, indent=1) + "\n")
    if out.exists():
        out.rmdir()
    tmp.replace(out)
    return out
