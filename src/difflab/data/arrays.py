"""Load images (and optional labels) from a .npz archive, never unpickling anything."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from difflab.data.dataset import ImageData, to_unit_range
from difflab.errors import UserError

IMAGE_KEYS = ("x", "images")
LABEL_KEYS = ("labels", "y")
_SAVE_HINT = "save it with np.savez(path, x=images, labels=labels)"


def _read_member(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array from the archive; object (pickled) arrays are refused."""
    try:
        arr = archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "object" in str(exc).lower():
            raise UserError(f"{path}: array {key!r} holds Python objects, which are never unpickled; {_SAVE_HINT} from numeric arrays") from None
        raise UserError(f"{path}: cannot read array {key!r} ({exc}); {_SAVE_HINT}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: array {key!r} is damaged ({exc}); {_SAVE_HINT}") from None
    if arr.dtype.hasobject:
        raise UserError(f"{path}: array {key!r} holds Python objects; {_SAVE_HINT} from numeric arrays")
    return arr


def _to_nchw(arr: np.ndarray, path: Path) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) -> (N, C, H, W); channels-first wins when both readings fit."""
    if arr.ndim == 3:
        return arr[:, None]
    if arr.ndim != 4:
        raise UserError(f"{path}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got shape {arr.shape}")
    first, last = arr.shape[1] <= 4, arr.shape[3] <= 4
    if first:
        return arr
    if last:
        return arr.transpose(0, 3, 1, 2)
    raise UserError(f"{path}: cannot tell the channel axis of shape {arr.shape}: put 1-4 channels first or last")


def _to_unit(arr: np.ndarray, key: str, path: Path) -> torch.Tensor:
    """uint8 (or integer 0..255) -> [-1, 1]; floats must already lie in [-1, 1]."""
    if arr.dtype == np.uint8:
        return to_unit_range(arr)
    if np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.bool_):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise UserError(f"{path}: integer array {key!r} spans {lo}..{hi}; store pixels as uint8 0..255 or floats in [-1, 1]")
        return to_unit_range(arr.astype(np.uint8))
    if np.issubdtype(arr.dtype, np.floating):
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if not torch.isfinite(x).all():
            raise UserError(f"{path}: array {key!r} contains NaN or inf; clean the data before saving")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1.0 or hi > 1.0:
            raise UserError(f"{path}: float array {key!r} spans [{lo:.4g}, {hi:.4g}], outside [-1, 1]; rescale (x / 127.5 - 1 for 0..255) or store uint8")
        return x
    raise UserError(f"{path}: array {key!r} has dtype {arr.dtype}; store images as uint8 0..255 or floats in [-1, 1]")


def _labels(arr: np.ndarray, key: str, n: int, path: Path) -> tuple[torch.Tensor, int]:
    """Integer labels (N,) >= 0 and the class count max + 1."""
    if arr.ndim != 1 or len(arr) != n:
        raise UserError(f"{path}: {key!r} has shape {arr.shape} but there are {n} images; store one integer label per image")
    if not np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_):
        raise UserError(f"{path}: {key!r} has dtype {arr.dtype}; store class labels as integers 0..K-1")
    if n and arr.min() < 0:
        raise UserError(f"{path}: {key!r} contains negative values; store class labels as integers 0..K-1")
    labels = torch.from_numpy(arr.astype(np.int64))
    return labels, int(labels.max()) + 1 if n else 0


def load_npz(path: str) -> ImageData:
    """Images from key x or images (plus optional labels or y) as (N, C, H, W) float32 in [-1, 1]."""
    file = Path(path).expanduser()
    if not file.exists():
        raise UserError(f"array file {file} does not exist: set data.path to a .npz file")
    if not file.is_file():
        raise UserError(f"{file} is not a file: set data.path to a .npz file (use data.name=folder for image folders)")
    if not zipfile.is_zipfile(file):
        raise UserError(f"{file} is not a .npz (zip) archive; {_SAVE_HINT}")
    try:
        archive = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{file} cannot be opened as .npz ({exc}); {_SAVE_HINT}") from None
    with archive:
        keys = list(archive.files)
        image_key = next((k for k in IMAGE_KEYS if k in keys), None)
        if image_key is None:
            raise UserError(f"{file} has no array named 'x' or 'images' (keys present: {', '.join(keys) or 'none'}); {_SAVE_HINT}")
        images = _read_member(archive, image_key, file)
        label_key = next((k for k in LABEL_KEYS if k in keys), None)
        raw_labels = None if label_key is None else _read_member(archive, label_key, file)
    if images.size == 0:
        raise UserError(f"{file}: array {image_key!r} is empty (shape {images.shape}); save at least one image")
    x = _to_unit(_to_nchw(images, file), image_key, file)  # (N, C, H, W)
    pixels = {"quantized": not np.issubdtype(images.dtype, np.floating), "value_range": (-1.0, 1.0)}
    if raw_labels is None:
        return ImageData(x=x, **pixels)
    labels, num_classes = _labels(raw_labels, label_key, len(x), file)
    return ImageData(x=x, labels=labels, num_classes=num_classes, **pixels)
