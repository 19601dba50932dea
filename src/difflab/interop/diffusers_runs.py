"""A diffusers folder as a difflab run (in memory, or written as a run folder every command takes), and a difflab run
as a diffusers folder: the loading and writing around the mapping of interop/diffusers_folder.py."""
from __future__ import annotations

import json
from pathlib import Path

from difflab.config import dump_yaml, to_dict
from difflab.data.dataset import DataConfig
from difflab.errors import UserError
from difflab.interop.diffusers_folder import WEIGHTS, find_parts, read_folder, write_folder
from difflab.train.build import build_network
from difflab.train.checkpoint import save_checkpoint
from difflab.train.loop import CHECKPOINT
from difflab.train.run import LoadedRun
from difflab.utils import file_digest


def load_diffusers(root: str | Path, data: DataConfig | None = None) -> LoadedRun:
    """A diffusers folder as a loaded run: difflab's U-Net holding the UNet2DModel's weights (live = EMA)."""
    cfg, spec, state = read_folder(root, data)
    net = build_network(cfg).eval()
    try:
        net.load_state_dict(state)
    except RuntimeError as e:  # a shape the config did not announce
        line = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise UserError(f"{root}: the weights do not fit unet/config.json ({line[:140]})") from None
    return LoadedRun(cfg, net, net, 0, 0, spec)


def import_diffusers(root: str | Path, out: str | Path, data: DataConfig | None = None) -> Path:
    """Write a diffusers folder as a difflab run folder (checkpoint.safetensors, config.yaml, source.json)."""
    run = load_diffusers(root, data)
    out = Path(out)
    if (out / CHECKPOINT).exists():
        raise UserError(f"{out} already holds a run: choose a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in run.net.state_dict().items()}
    tensors = {**{f"model.{k}": v for k, v in state.items()}, **{f"ema.{k}": v.clone() for k, v in state.items()}}
    meta = {"config": to_dict(run.cfg), "step": 0, "images": 0, "seconds": 0.0, "data": run.spec.to_dict(),
            "optimizer": None, "grad_scaler": None, "bad_in_a_row": 0, "world_size": 1, "data_position": 0}
    save_checkpoint(out / CHECKPOINT, tensors, meta)
    (out / "config.yaml").write_text(dump_yaml(run.cfg))
    unet_dir, _ = find_parts(root)
    (out / "source.json").write_text(json.dumps({"diffusers_folder": str(Path(root).resolve()),
                                                 "weights_sha256": file_digest(unet_dir / WEIGHTS)}, indent=1) + "\n")
    return out


def export_diffusers(pipe, out: str | Path) -> Path:
    """A difflab Pipeline's network written as a DDPMPipeline folder (see diffusers_folder.write_folder)."""
    return write_folder(pipe, out)
