"""Checkpoints: one safetensors file (model, EMA, optimizer tensors) with JSON metadata; written atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from difflab.errors import UserError

FORMAT = "difflab-checkpoint-2"  # 2: preconditioned networks on noise levels, data description, every model kind
OLD_FORMATS = {"difflab-checkpoint-1": "networks conditioned on the schedule's time t, before preconditioning"}


def optimizer_to_flat(state: dict) -> tuple[dict[str, Tensor], dict]:
    """Split an optimizer state_dict into tensors ('optim.<param>.<key>') and JSON (param groups, scalars)."""
    tensors, scalars = {}, {}
    for pid, st in state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v.contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, Tensor], meta: dict) -> dict:
    """Inverse of optimizer_to_flat."""
    state: dict[int, dict] = {}
    for name, v in tensors.items():
        if name.startswith("optim."):
            _, pid, k = name.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: str | Path, tensors: dict[str, Tensor], meta: dict) -> None:
    """Write tensors + JSON metadata to `path` via a temp file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"format": FORMAT, "meta": json.dumps(meta)})
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # readable like the run's other files (the writer creates it 0600)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_meta(path: str | Path) -> dict:
    """A checkpoint's JSON metadata from its header alone (no tensors read); UserError if missing, damaged, foreign."""
    path = _file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"checkpoint {path} is corrupt or not a safetensors file ({str(e)[:80]}): "
                        "use another checkpoint or retrain") from None
    if header.get("format") in OLD_FORMATS:
        raise UserError(f"{path} was written by an earlier difflab ({OLD_FORMATS[header['format']]}): this version "
                        "cannot load it; retrain with `difflab train --config` on the run's config.yaml")
    if header.get("format") != FORMAT:
        raise UserError(f"{path} is a safetensors file but not a difflab checkpoint (no '{FORMAT}' tag)")
    try:
        return json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError):
        raise UserError(f"checkpoint {path} has damaged metadata: use another checkpoint") from None


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """Read a checkpoint without pickle; a missing, corrupt, truncated or foreign file raises UserError."""
    path = _file(path)
    meta = read_meta(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"checkpoint {path} is corrupt or truncated ({str(e)[:80]}): "
                        "use another checkpoint or retrain") from None
    return tensors, meta


def _file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist: pass a run folder or its checkpoint.safetensors")
    return path


def split_prefix(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under 'prefix.' with the prefix removed."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
