"""A finished or running run folder: its config and its networks, loaded without pickle."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from difflab.config import RunConfig, from_dict
from difflab.errors import UserError
from difflab.train.loop import CHECKPOINT
from difflab.train.state import load_state


@dataclass(frozen=True)
class LoadedRun:
    cfg: RunConfig
    net: nn.Module  # live weights
    ema: nn.Module  # EMA weights
    step: int
    images: int
    shape: tuple[int, ...]  # one example, (C, H, W) or (D,)


def load_run(path: str | Path) -> LoadedRun:
    """Load a run folder (or its checkpoint file); the config comes from the checkpoint itself."""
    from difflab.train.checkpoint import read_meta

    path = Path(path)
    ckpt = path / CHECKPOINT if path.is_dir() else path
    meta = read_meta(ckpt)
    if isinstance(meta.get("config"), dict) and "vae" in meta["config"]:
        raise UserError(f"{ckpt} is a VAE checkpoint (from `difflab vae`); sample and eval take a diffusion run "
                        "folder from `difflab train`")
    try:
        cfg = from_dict(RunConfig, meta["config"])
    except (KeyError, UserError) as e:
        raise UserError(f"checkpoint {ckpt} carries an unusable config ({e}): retrain or use another checkpoint") from None
    st = load_state(ckpt, cfg)
    st.net.eval()
    return LoadedRun(cfg, st.net, st.ema.model, st.step, st.images, st.data_shape)
