"""Small shared helpers."""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import torch
from torch import Tensor


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Broadcast a per-sample tensor of shape (B,) (or scalar) against a (B, ...) tensor of `ndim` dims."""
    v = torch.as_tensor(v)
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def bcast(v: Tensor | float, like: Tensor) -> Tensor:
    """A scalar or (B,) coefficient (often float64) shaped (B, 1, ...) in the dtype and on the device of `like`."""
    return append_dims(torch.as_tensor(v), like.ndim).to(like.device, like.dtype)


def bits_per_dim(nats: Tensor | float, dims: int) -> Tensor | float:
    """nats per example -> bits per dimension: nats / (D ln 2)."""
    return nats / (dims * math.log(2))


def cache_dir() -> Path:
    """Where decoded arrays and computed features live: $DIFFLAB_CACHE or ~/.cache/difflab."""
    return Path(os.environ.get("DIFFLAB_CACHE", Path.home() / ".cache" / "difflab"))


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
