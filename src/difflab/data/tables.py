"""Non-image data shipped inside wheels, for the tailored autoencoders of latent diffusion (seed: 'diffusion on
non-image data is possible with tailored autoencoders'):

* breast_cancer: scikit-learn's Wisconsin diagnostic table, 569 rows x 30 measurements (label: malignant / benign);
* wine: scikit-learn's wine table, 178 rows x 13 measurements (label: the cultivar, 3 classes);
* co2: statsmodels' weekly Mauna Loa CO2 record (1958-2001, 2,284 weeks, gaps filled linearly), as windows of
  64 weeks with each window's own mean removed (the trend goes; the seasonal cycle and its wobble stay).

Rows are split by a fixed permutation (80 % train, 20 % test); the series by time (the first 80 % of weeks train,
the rest test, so no window crosses). Every split is standardized by the training split's statistics (per column for
tables, one scale for the series), so samples compare with held-out data in the same units.
"""
from __future__ import annotations

import numpy as np
import torch

from difflab.errors import need

TABLES = ("breast_cancer", "wine")
SERIES = ("co2",)
WINDOW = 64  # weeks per co2 window
TRAIN_SHARE = 0.8



def table(name: str, split: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(rows (N, D) float32 standardized by the training rows, labels (N,) int64, number of classes)."""
    datasets = need("sklearn.datasets", "scikit-learn")
    bunch = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine}[name]()
    x, y = np.asarray(bunch.data, np.float64), np.asarray(bunch.target, np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(TRAIN_SHARE * len(x))
    train, rows = order[:cut], (order[:cut] if split == "train" else order[cut:])
    mean, std = x[train].mean(0), x[train].std(0)
    z = (x[rows] - mean) / std
    return torch.from_numpy(z.astype(np.float32)), torch.from_numpy(y[rows]), int(y.max()) + 1


def co2_weeks() -> np.ndarray:
    """The weekly CO2 record in ppm (2,284 weeks), missing weeks linearly interpolated."""
    sm = need("statsmodels.api", "statsmodels")
    v = sm.datasets.co2.load_pandas().data["co2"].to_numpy(np.float64).copy()
    gaps = np.isnan(v)
    v[gaps] = np.interp(np.flatnonzero(gaps), np.flatnonzero(~gaps), v[~gaps])
    return v


def windows(v: np.ndarray, stride: int) -> np.ndarray:
    """(N, WINDOW) windows of v every `stride` steps, each minus its own mean."""
    w = np.stack([v[i: i + WINDOW] for i in range(0, len(v) - WINDOW + 1, stride)])
    return w - w.mean(1, keepdims=True)


def co2(split: str) -> torch.Tensor:
    """(N, 1, 64) windows: training weeks every 4 weeks, held-out weeks every 8; one scale (the training std)."""
    v = co2_weeks()
    cut = int(TRAIN_SHARE * len(v))
    train = windows(v[:cut], 4)
    w = train if split == "train" else windows(v[cut:], 8)
    return torch.from_numpy((w / train.std()).astype(np.float32))[:, None]
