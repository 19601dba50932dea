"""Load a folder of image files (recursively) into ImageData, with class labels from sub-folder names (their order
from a classes.txt at the root if there is one)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from difflab.data.dataset import PIXELS, ImageData, to_unit_range
from difflab.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def find_images(root: Path) -> list[Path]:
    """Image files under root (any depth, hidden files and folders skipped), sorted by relative path."""
    found = [
        p for p in root.rglob("*")
        if p.suffix.lower() in EXTENSIONS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


CLASSES_FILE = "classes.txt"  # optional, at the folder's root: one sub-folder name per line, in label order


def _class_labels(root: Path, paths: list[Path]) -> tuple[torch.Tensor | None, tuple[str, ...] | None]:
    """Labels from each file's top-level sub-folder when every file has one, else (None, None); the names in the
    order of root/classes.txt if there is one, else sorted."""
    rel = [p.relative_to(root).parts for p in paths]
    if not rel or any(len(parts) < 2 for parts in rel):
        return None, None
    found = sorted({parts[0] for parts in rel})
    names = found
    listed = root / CLASSES_FILE
    if listed.is_file():
        names = [ln.strip() for ln in listed.read_text(errors="replace").splitlines() if ln.strip()]
        missing = [n for n in found if n not in names]
        if missing or len(set(names)) != len(names):
            why = f"does not list {', '.join(missing)}" if missing else "names a class twice"
            raise UserError(f"{listed} {why}: list each sub-folder once, one per line, in label order")
    index = {name: i for i, name in enumerate(names)}
    return torch.tensor([index[parts[0]] for parts in rel], dtype=torch.int64), tuple(names)


def read_image(path: Path, mode: str | None, image_size: int) -> np.ndarray:
    """One image as uint8 (H, W, C), converted to mode (L/RGB; None = L if grayscale else RGB) and resized."""
    try:
        with Image.open(path) as im:
            im.load()
            if mode is None:
                mode = "L" if im.mode in _GRAY_MODES else "RGB"
            if im.mode.startswith("I;16"):  # 16-bit grayscale: PIL's convert would clip, so scale to 8 bits
                im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257.0).round().astype(np.uint8))
            im = im.convert(mode)
            if image_size:
                im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {exc}; remove or replace the file") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def load_folder(path: str, image_size: int = 0, channels: int = 0, limit: int = 0) -> ImageData:
    """Images under path as (N, C, H, W) in [-1, 1]; channels 0 keeps gray as 1 and anything else as 3."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"image folder {root} does not exist: set data.path to a folder of images")
    if not root.is_dir():
        raise UserError(f"{root} is not a directory: set data.path to a folder of images (use data.name=npz for .npz files)")
    paths = find_images(root)
    if not paths:
        raise UserError(f"no images ({'/'.join(e[1:] for e in EXTENSIONS)}) found under {root}: check data.path")
    labels, names = _class_labels(root, paths)  # from all files, so indices do not depend on limit
    if limit:
        paths, labels = paths[:limit], None if labels is None else labels[:limit]
    mode = {0: None, 1: "L", 3: "RGB"}[channels]
    arrays = [read_image(p, mode, image_size) for p in paths]  # each (H, W, C)
    first = arrays[0].shape[:2]
    for p, a in zip(paths, arrays):
        if a.shape[:2] != first:
            raise UserError(
                f"image {p} is {a.shape[1]}x{a.shape[0]} but {paths[0].name} is {first[1]}x{first[0]}: "
                "set data.image_size to resize all images to one square size"
            )
    if channels == 0 and any(a.shape[2] == 3 for a in arrays):  # mixed gray and colour: promote gray to RGB
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    x = to_unit_range(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
    return ImageData(x=x, labels=labels, num_classes=len(names) if names else None, class_names=names, **PIXELS)
