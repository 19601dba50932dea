"""Build the dataset a DataConfig names: load it, then apply limit / channels / image_size uniformly."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from PIL import Image

from difflab.data.arrays import load_npz
from difflab.data.dataset import DATASET_NAMES, NO_DATA, PIXELS, DataConfig, ImageData, to_uint8, to_unit_range
from difflab.data.folder import load_folder
from difflab.data.mnist import load_mnist
from difflab.data.toy import gaussian_mixture, swiss_roll, two_moons
from difflab.errors import UserError

WORD_DROPOUT = 0.05  # share of a training caption's non-digit words read as unknown
_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601-2, as PIL's RGB -> L


def _mnist(cfg: DataConfig) -> ImageData:
    """MNIST as (N, 1, 28, 28) in [-1, 1] with digit labels (10 classes)."""
    images, labels = load_mnist(cfg.split)
    stop = cfg.limit or None  # slice before converting: saves memory for small limits
    x = to_unit_range(images[:stop])[:, None]  # (N, 28, 28) -> (N, 1, 28, 28)
    return ImageData(x=x, labels=torch.from_numpy(labels[:stop].astype(np.int64)), num_classes=10,
                     class_names=tuple("0123456789"), **PIXELS)


def _mnist_pairs(cfg: DataConfig) -> ImageData:
    """Two MNIST digits side by side, (N, 1, 28, 56), captioned in the training phrasings with 5% word dropout;
    label = 10 left + right (100 classes). N = data.limit, else as many canvases as the split has digits; with
    data.heldout_pairs, no canvas of the held-out digit pairs."""
    from difflab.data.captions import two_digit_canvas

    from difflab.conditions.language import HELD_OUT_PAIRS

    images, labels = load_mnist(cfg.split)
    c = two_digit_canvas(images, labels, cfg.limit or len(images), seed=cfg.seed, word_dropout=WORD_DROPOUT,
                         exclude=HELD_OUT_PAIRS if cfg.heldout_pairs else ())
    return ImageData(x=to_unit_range(c.images)[:, None], labels=torch.from_numpy(10 * c.left + c.right),
                     num_classes=100, captions=c.captions, **PIXELS)

MEDICAL_SIZE = 64  # brain slices and phantoms unless data.image_size says otherwise


def _brain(cfg: DataConfig) -> ImageData:
    """MNI152 axial slices: training levels (augmented x8) or held-out levels (data.split=test)."""
    from difflab.data.medical import brain_slices

    x = brain_slices(cfg.image_size or MEDICAL_SIZE, cfg.split, seed=cfg.seed)
    return ImageData(x=to_unit_range(to_uint8(x)), **PIXELS)  # on the 8-bit grid, as saved images would be


def _phantoms(cfg: DataConfig) -> ImageData:
    """Random ellipse phantoms: 4,000 for training, 200 others for data.split=test."""
    from difflab.data.medical import ellipse_phantoms

    n, seed = (cfg.limit or 4000, cfg.seed) if cfg.split == "train" else (cfg.limit or 200, cfg.seed + 10_000)
    x = ellipse_phantoms(n, cfg.image_size or MEDICAL_SIZE, seed)
    return ImageData(x=to_unit_range(to_uint8(x)), **PIXELS)


PHOTO_PATCHES = {"train": 20_000, "test": 200}  # patches per split


def _photos(cfg: DataConfig) -> ImageData:
    """Greyscale 32 x 32 patches of scikit-image's photos; the test split from an image no training patch sees."""
    from difflab.data.photos import photo_patches

    n = cfg.limit or PHOTO_PATCHES[cfg.split]
    x = photo_patches(cfg.split, n, cfg.image_size or 32, cfg.seed)  # integers 0..255
    return ImageData(x=to_unit_range(to_uint8(x / 127.5 - 1)), **PIXELS)


def _table(cfg: DataConfig) -> ImageData:
    """scikit-learn's breast-cancer / wine rows (N, D), standardized by the training rows, with their labels."""
    from difflab.data.tables import table

    x, labels, classes = table(cfg.name, cfg.split)
    return ImageData(x=x, labels=labels, num_classes=classes)


def _series(cfg: DataConfig) -> ImageData:
    """Windows (N, 1, 64) of statsmodels' weekly CO2 record."""
    from difflab.data.tables import co2

    return ImageData(x=co2(cfg.split))


def _no_data(cfg: DataConfig) -> ImageData:
    raise UserError("this run has no dataset (it was imported without --data): import it again with --data NAME "
                    "(or --data folder --data-path DIR) to evaluate it on that data")


_LOADERS: dict[str, Callable[[DataConfig], ImageData]] = {
    "mnist": _mnist,
    "mnist_pairs": _mnist_pairs,
    "brain": _brain,
    "phantoms": _phantoms,
    "photos": _photos,
    "folder": lambda cfg: load_folder(cfg.path, cfg.image_size, cfg.channels, cfg.limit),
    "npz": lambda cfg: load_npz(cfg.path),
    "moons": lambda cfg: two_moons(cfg.num_points, cfg.seed),
    "swiss_roll": lambda cfg: swiss_roll(cfg.num_points, cfg.seed),
    "gmm": lambda cfg: gaussian_mixture(cfg.num_points, cfg.seed),
    "breast_cancer": _table,
    "wine": _table,
    "co2": _series,
    NO_DATA: _no_data,
}
assert set(_LOADERS) == set(DATASET_NAMES), "every DataConfig name needs a loader"


def _limit(data: ImageData, limit: int) -> ImageData:
    """Keep the first `limit` examples (0 = all)."""
    if not limit or limit >= len(data):
        return data
    labels = None if data.labels is None else data.labels[:limit]
    captions = None if data.captions is None else data.captions[:limit]
    return replace(data, x=data.x[:limit], labels=labels, captions=captions)


def _channels(data: ImageData, channels: int) -> ImageData:
    """Convert (N, C, H, W) to 1 channel (luma) or 3 (gray repeated); 0 keeps."""
    have = data.x.shape[1]
    if not channels or channels == have:
        return data
    if (have, channels) == (1, 3):
        x = data.x.expand(-1, 3, -1, -1).contiguous()
    elif (have, channels) == (3, 1):
        x = torch.einsum("nchw,c->nhw", data.x, _LUMA)[:, None]  # (N, 3, H, W) -> (N, 1, H, W)
    else:
        raise UserError(f"cannot convert {have}-channel images to {channels} channels: set data.channels to 0 or store 1 or 3 channels")
    return replace(data, x=x)


def _resize(data: ImageData, size: int) -> ImageData:
    """Resize (N, C, H, W) to (N, C, size, size) per channel with PIL bilinear on float32 (mode F)."""
    if not size or data.x.shape[-2:] == (size, size):
        return data
    src = data.x.numpy()
    out = np.empty((*src.shape[:2], size, size), dtype=np.float32)
    for n in range(src.shape[0]):
        for c in range(src.shape[1]):
            img = Image.fromarray(src[n, c]).resize((size, size), Image.Resampling.BILINEAR)
            out[n, c] = np.asarray(img)
    x = torch.from_numpy(out).clamp_(-1.0, 1.0)
    if data.quantized:  # back onto the 8-bit grid, as the resized image saved as a PNG would be
        x = to_unit_range(to_uint8(x))
    return replace(data, x=x)


def build_dataset(cfg: DataConfig) -> ImageData:
    """Load the dataset cfg.name names; images come out (N, C, H, W) float32 in [-1, 1], toy sets (N, 2); with
    data.latent set, latent/codec.py's model_data gives the autoencoder's latents of them."""
    if cfg.latent:
        raise UserError(f"data.latent={cfg.latent!r}: latents come from the autoencoder (difflab.latent.codec.model_data)")
    data = _limit(_LOADERS[cfg.name](cfg), cfg.limit)
    if data.x.ndim == 4:
        data = _resize(_channels(data, cfg.channels), cfg.image_size)
    if len(data) == 0:
        raise UserError(f"dataset is empty (data.name={cfg.name!r}, data.limit={cfg.limit}): check data.path / data.split")
    return data
