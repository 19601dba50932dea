"""A finished or running run folder: its config, its networks and its data description, loaded without pickle."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from difflab.config import RunConfig, from_dict, upgrade
from difflab.data.dataset import DataConfig, DataSpec
from difflab.errors import UserError
from difflab.train.checkpoint import read_meta
from difflab.train.loop import CHECKPOINT
from difflab.train.state import load_state

WHAT = {"diffusion": "a diffusion run folder from `difflab train`",
        "vae": "a VAE run from `difflab vae` or `difflab train-autoencoder`",
        "classifier": "a classifier run (difflab train --set model=classifier)"}


@dataclass(frozen=True)
class LoadedRun:
    cfg: RunConfig
    net: nn.Module  # live weights
    ema: nn.Module  # EMA weights
    step: int
    images: int
    spec: DataSpec  # what the model was trained on

    @property
    def shape(self) -> tuple[int, ...]:
        """One example, (C, H, W) or (D,)."""
        return self.spec.shape


def load_run(path: str | Path, model: str = "diffusion") -> LoadedRun:
    """Load a run folder (or its checkpoint file) of the given model kind; the config comes from the checkpoint."""
    path = Path(path)
    ckpt = path / CHECKPOINT if path.is_dir() else path
    meta = read_meta(ckpt)
    saved = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    kind = saved.get("model", "diffusion")
    if kind != model:
        raise UserError(f"{ckpt} is {WHAT.get(kind, kind)}, but this command takes {WHAT[model]}")
    try:
        cfg = from_dict(RunConfig, upgrade(meta["config"]))
    except (KeyError, UserError) as e:
        raise UserError(f"checkpoint {ckpt} carries an unusable config ({e}): retrain or use another checkpoint") from None
    if not meta.get("data"):
        raise UserError(f"checkpoint {ckpt} was written before any training step: train it first (--resume)")
    if cfg.data.latent:  # an autoencoder moved along with this run is found beside it
        cfg = replace(cfg, data=relocate(cfg.data, path if path.is_dir() else ckpt.parent))
    st = load_state(ckpt, cfg)
    st.net.eval()
    st.ema.model.eval()
    return LoadedRun(cfg, st.net, st.ema.model, st.step, st.images, st.data_spec)


def relocate(data: DataConfig, run_dir: Path) -> DataConfig:
    """data with data.latent pointed at the autoencoder's folder beside `run_dir` (a latent run's folder) when the
    recorded path is gone but a folder of the same name sits next to the run: runs moved or copied together keep
    working (the recorded sha256 still decides whether it is the same autoencoder)."""
    if not data.latent or Path(data.latent).exists():
        return data
    beside = run_dir.parent / Path(data.latent).name
    return replace(data, latent=str(beside)) if beside.exists() else data
