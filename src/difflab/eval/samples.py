"""Samples as files: a PNG grid of images, or a scatter (a plot of series) over the training data for points; and
the arrays beside it (uint8 images, or float points)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor

from difflab.data.build import build_dataset
from difflab.data.dataset import DataConfig, DataSpec, to_uint8
from difflab.eval.grid import by_label, save_grid
from difflab.eval.plots import plot_points, plot_series


def sample_figure(x: Tensor, path: str | Path, spec: DataSpec, data: DataConfig, nrow: int | None = None,
                  labels: Sequence[str] = ()) -> Path:
    """A PNG of samples in data space: an image grid (one row per class with `labels`, each sample's class name), or
    a scatter over the training data for 2-D points."""
    path = Path(path)
    if spec.is_image and labels:
        x, cols, rows = by_label(x, labels)
        return save_grid(x, path, cols, row_labels=rows)
    if spec.is_image:
        return save_grid(x, path, nrow)
    reference = build_dataset(data.pixels).x[:2000]
    return plot_series(x, path, reference) if x.ndim == 3 else plot_points(x, path, reference)


def save_samples(x: Tensor, out: str | Path, name: str, spec: DataSpec, data: DataConfig,
                 labels: Sequence[str] = ()) -> Path:
    """NAME.png (sample_figure) and NAME.npz (uint8 images (N, H, W[, C]) or float points (N, D); with `labels`,
    each sample's class name) in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sample_figure(x, out / f"{name}.png", spec, data, labels=labels)
    extra = {"labels": np.array(labels)} if labels else {}
    if spec.is_image:
        imgs = to_uint8(x).transpose(0, 2, 3, 1)  # (N, H, W, C)
        np.savez_compressed(out / f"{name}.npz", images=imgs[..., 0] if imgs.shape[-1] == 1 else imgs, **extra)
    else:
        np.savez_compressed(out / f"{name}.npz", samples=x.numpy(), **extra)
    return out / f"{name}.png"
