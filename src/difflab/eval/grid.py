"""Sample grids as PNG files (PIL, no matplotlib needed)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
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


def save_grid(x: Tensor, path: str | Path, nrow: int | None = None, upscale: int = 2,
              row_labels: Sequence[str] = ()) -> Path:
    """Write a PNG grid of images in [-1, 1]; `row_labels` are written left of the rows, one each."""
    arr = grid_array(x, nrow, upscale=upscale)
    im = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    if row_labels:
        im = _label_rows(im, row_labels)
    im.save(path)
    return Path(path)


def by_label(x: Tensor, labels: Sequence[str]) -> tuple[Tensor, int, list[str]]:
    """Samples regrouped one row per label (in order of first appearance; short rows padded with blank images):
    (images, columns, the row labels)."""
    rows = list(dict.fromkeys(labels))
    members = [[k for k, lab in enumerate(labels) if lab == r] for r in rows]
    cols = max(len(m) for m in members)
    blank = torch.full_like(x[:1], -1.0)
    return torch.cat([torch.cat([x[m], blank.expand(cols - len(m), *x.shape[1:])]) for m in members]), cols, rows


def _label_rows(im: Image.Image, labels: Sequence[str]) -> Image.Image:
    """The grid with a white margin on the left holding each row's label, vertically centred on its row."""
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(im)
    width = max(int(draw.textlength(s, font=font)) for s in labels) + 8
    out = Image.new(im.mode, (im.width + width, im.height), 255 if im.mode == "L" else (255, 255, 255))
    out.paste(im, (width, 0))
    draw, row_h = ImageDraw.Draw(out), im.height / len(labels)
    for r, s in enumerate(labels):
        draw.text((4, int((r + 0.5) * row_h) - 5), s, fill=0 if im.mode == "L" else (0, 0, 0), font=font)
    return out
