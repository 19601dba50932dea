"""What a restoration reads: images to measure (PNG, JPEG, .npy, DICOM), masks, and measurement files with the task
settings they were measured with; every way a file can be wrong is one line."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from difflab.errors import UserError


def load_images(paths: list[str], shape: tuple[int, ...], resize: bool) -> Tensor:
    """(N, C, H, W) in [-1, 1] from image files, .npy arrays or DICOM files, refused unless they fit `shape`."""
    out = []
    for p in paths:
        out.append(load_image(Path(p), shape[0]))
    C, H, W = shape
    fixed = []
    for p, x in zip(paths, out):
        if tuple(x.shape[-2:]) != (H, W):
            if not resize:
                raise UserError(f"{p} is {x.shape[-2]}x{x.shape[-1]} but the run makes {H}x{W} images: pass --resize "
                                "or use a run trained on this size (an image already degraded: --measurement FILE)")
            x = torch.nn.functional.interpolate(x[None], size=(H, W), mode="bilinear", antialias=True)[0]
        fixed.append(x.clamp(-1, 1))
    return torch.stack(fixed)


def load_image(path: Path, channels: int) -> Tensor:
    """(C, H, W) in [-1, 1] of any size from an image file, a .npy array or a DICOM file, with `channels` channels."""
    import numpy as np
    from difflab.data.medical import to_unit

    if not path.is_file():
        raise UserError(f"input {path} does not exist")
    if path.suffix.lower() == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except ValueError:
            raise UserError(f"{path} is not a plain .npy array (object arrays are refused)") from None
        a = a[None] if a.ndim == 2 else a
        if a.ndim != 3 or not np.issubdtype(a.dtype, np.number):
            raise UserError(f"{path} must hold an (H, W) or (C, H, W) numeric array, got {a.shape} {a.dtype}")
        x = torch.from_numpy(a.astype(np.float32) / 127.5 - 1 if a.dtype == np.uint8 else a.astype(np.float32))
    elif path.suffix.lower() in (".dcm", ".dicom"):
        import pydicom

        try:
            x = torch.from_numpy(to_unit(pydicom.dcmread(str(path)).pixel_array))[None]
        except Exception as e:  # pydicom raises many kinds on a bad file
            raise UserError(f"{path} is not a readable DICOM image ({type(e).__name__})") from None
    else:  # PNG, JPEG, ...: the image-folder reader (16-bit greyscale scaled, one line on a bad file)
        from difflab.data.folder import read_image

        a = read_image(path, "L" if channels == 1 else "RGB", 0)  # (H, W, C) uint8
        x = torch.from_numpy(a.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)
    if x.shape[0] != channels:
        if x.shape[0] == 1 and channels == 3:
            x = x.expand(3, -1, -1)
        else:
            raise UserError(f"{path} has {x.shape[0]} channels but the run makes {channels}-channel images")
    return x


def load_mask(path: str) -> Tensor:
    """A PNG / image file as a 0/1 mask (white = observed)."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path).convert("L")
    except (FileNotFoundError, IsADirectoryError, UnidentifiedImageError, OSError):
        raise UserError(f"--mask {path} is not a readable image: pass box, random or a PNG (white = observed)") from None
    return (torch.tensor(list(img.getdata()), dtype=torch.float32).reshape(img.height, img.width) > 127).float()


FLAGS = {"noise_std": "--noise", "mask": "--mask", "factor": "--factor", "blur": "--blur",
         "acceleration": "--acceleration", "center_fraction": "--center-fraction", "views": "--views"}


def read_measurement(path: str, tc):  # tc: an inverse.restore.TaskConfig
    """(y, the task settings it was measured with) from a measurement.npz: settings the file records replace the
    defaults; a flag given with another value than the file's is refused, as is another task (the mask seed comes
    from the file: it fixes the MRI and random-inpainting masks)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            y = torch.from_numpy(f["y"])
            saved = json.loads(str(f["settings"])) if "settings" in f.files else None
    except (OSError, ValueError, KeyError):
        raise UserError(f"{path} must be an .npz with the measurement under key y") from None
    if saved is None:  # an array from elsewhere: the flags describe it
        return y, tc
    if not isinstance(saved, dict) or set(saved) != set(asdict(tc)):
        raise UserError(f"{path} has unreadable task settings: write it again with difflab restore")
    if saved["task"] != tc.task:
        raise UserError(f"{path} was measured for --task {saved['task']}, not {tc.task}")
    default = asdict(type(tc)(tc.task))
    for key, flag in FLAGS.items():
        mine = getattr(tc, key)
        if mine != default[key] and mine != saved[key]:
            raise UserError(f"{path} was measured with {flag} {saved[key]}, not {mine}: drop {flag} (the file records "
                            "how it was measured)")
    return y, type(tc)(**saved)
