"""Photo patches from the public-domain / CC0 images inside the scikit-image wheel (nothing is downloaded): each
image in greyscale (ITU-R 601-2 luma), shrunk by 2 (area averaging) so a patch holds objects rather than texture,
cut into random size x size patches (seeded) with horizontal flips. Training images: astronaut, coffee, rocket,
hubble_deep_field, retina; the held-out image (data.split=test): chelsea, the cat, which no training patch sees.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from difflab.errors import need

TRAIN_IMAGES = ("astronaut", "coffee", "rocket", "hubble_deep_field", "retina")
TEST_IMAGES = ("chelsea",)
SHRINK = 2
LUMA = np.array([0.299, 0.587, 0.114])


def _image(name: str) -> torch.Tensor:
    """(1, 1, H / SHRINK, W / SHRINK) greyscale in [0, 255] (float)."""
    img = getattr(need("skimage.data", "scikit-image"), name)().astype(np.float64) @ LUMA  # (H, W)
    x = torch.from_numpy(img).float()[None, None]
    return F.avg_pool2d(x, SHRINK)


def photo_patches(split: str, n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 1, size, size) uint8-valued patches: n spread evenly over the split's images."""
    names = TRAIN_IMAGES if split == "train" else TEST_IMAGES
    g = torch.Generator().manual_seed(seed + (0 if split == "train" else 1))
    out = []
    for i, name in enumerate(names):
        img = _image(name)
        k = n // len(names) + (1 if i < n % len(names) else 0)
        H, W = img.shape[-2:]
        rows = torch.randint(0, H - size + 1, (k,), generator=g)
        cols = torch.randint(0, W - size + 1, (k,), generator=g)
        flip = torch.rand(k, generator=g) < 0.5
        for r, c, f in zip(rows.tolist(), cols.tolist(), flip.tolist()):
            p = img[0, :, r: r + size, c: c + size]
            out.append(p.flip(-1) if f else p)
    return torch.stack(out).round().clamp(0, 255)
