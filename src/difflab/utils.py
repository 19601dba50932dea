"""Small shared helpers."""
from __future__ import annotations

import torch
from torch import Tensor


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Broadcast a per-sample tensor of shape (B,) (or scalar) against a (B, ...) tensor of `ndim` dims."""
    v = torch.as_tensor(v)
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))
