"""Sample grids as PNG files (PIL, no matplotlib needed)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from difflab.data.dataset import to_uint8


def grid_array(x: Tensor, nrow: int | None = None, pad: int = 2, upscale: int = 1) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> one uint8 (rows*(H+pad), cols*(W+pad), C) mosaic."""
    imgs = to_uint8(x)  # (N, C, H, W)
    n, c, h, w = imgs.shape
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = imgs[k].transpose(1, 2, 0)
    if upscale > 1:
        out = out.repeat(upscale, 0).repeat(upscale, 1)
    return out


def save_grid(x: Tensor, path: str | Path, nrow: int | None = None, upscale: int = 2) -> Path:
    """Write a PNG grid of images in [-1, 1]."""
    arr = grid_array(x, nrow, upscale=upscale)
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)
    return Path(path)
