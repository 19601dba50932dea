"""The in-memory dataset type, the data config, and conversions between uint8 pixels and [-1, 1] floats."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from difflab.errors import UserError

IMAGE_SETS = ("mnist", "mnist_pairs", "brain", "phantoms", "photos", "folder", "npz")  # x is (N, C, H, W)
TOY_SETS = ("moons", "swiss_roll", "gmm")  # x is (N, D): points, not images
TABLE_SETS = ("breast_cancer", "wine")  # x is (N, D): standardized table rows
SERIES_SETS = ("co2",)  # x is (N, 1, L): windows of a time series
NO_DATA = "none"  # a model that came without its data (imported from diffusers): commands that need data say so
DATASET_NAMES = IMAGE_SETS + TOY_SETS + TABLE_SETS + SERIES_SETS + (NO_DATA,)
SPLIT_SETS = ("mnist", "mnist_pairs", "brain", "phantoms", "photos") + TABLE_SETS + SERIES_SETS  # with a held-out test split


@dataclass(frozen=True)
class DataSpec:
    """What the data is, carried by datasets and checkpoints (no guessing from shapes): the ELBO's decoder, clipping,
    how samples are written and which conditions exist all read it."""

    shape: tuple[int, ...]  # one example: (C, H, W) images, (D,) points or rows
    quantized: bool = False  # 8-bit values on the grid k / 127.5 - 1: the bound uses the discretized decoder
    value_range: tuple[float, float] | None = None  # the data's range (samples are clipped to it); None: unbounded
    space: str = "pixel"  # pixel (the data itself) or latent (an autoencoder's codes)
    num_classes: int = 0  # labels in [0, num_classes); 0: unlabelled

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        if self.value_range is not None:
            object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))

    @property
    def is_image(self) -> bool:
        """Pixel images (C, H, W): written as PNG grids."""
        return self.space == "pixel" and len(self.shape) == 3

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "quantized": self.quantized,
                "value_range": list(self.value_range) if self.value_range else None, "space": self.space,
                "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        return cls(tuple(d["shape"]), bool(d["quantized"]), d.get("value_range"), d.get("space", "pixel"),
                   int(d.get("num_classes", 0)))


PIXELS = {"quantized": True, "value_range": (-1.0, 1.0)}  # 8-bit images mapped to [-1, 1]


@dataclass(frozen=True, eq=False)
class ImageData:
    """A whole dataset in memory: x is (N, C, H, W) float32 in [-1, 1] for images, (N, C, L) for sequences, (N, D)
    for point sets and table rows."""

    x: Tensor  # (N, C, H, W), (N, C, L) or (N, D), float32
    labels: Tensor | None = None  # (N,) int64, or None when unlabelled
    num_classes: int | None = None  # labels lie in [0, num_classes) when given
    quantized: bool = False  # 8-bit values (k / 127.5 - 1)
    value_range: tuple[float, float] | None = None  # bounded data (images: (-1, 1)); None for points
    captions: tuple[str, ...] | None = None  # one caption per example (text-to-image), or None
    space: str = "pixel"  # pixel (the data itself) or latent (an autoencoder's codes of it)
    class_names: tuple[str, ...] | None = None  # the name of each label index (a folder's sub-folders), or None

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.shape, self.quantized, self.value_range, self.space, self.num_classes or 0)

    def __post_init__(self) -> None:
        """Check the invariants every loader must keep."""
        if self.x.dtype != torch.float32 or self.x.ndim not in (2, 3, 4):
            raise ValueError(f"ImageData.x must be float32 (N, C, H, W), (N, C, L) or (N, D), got {self.x.dtype} {tuple(self.x.shape)}")
        if self.labels is not None:
            if self.labels.dtype != torch.int64 or self.labels.shape != self.x.shape[:1]:
                raise ValueError(f"ImageData.labels must be int64 ({len(self.x)},), got {self.labels.dtype} {tuple(self.labels.shape)}")
            if self.num_classes is None:
                raise ValueError("ImageData.num_classes must be set when labels are given")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"ImageData.class_names must name all {self.num_classes} classes, got {self.class_names}")
        if self.captions is not None and len(self.captions) != len(self.x):
            raise ValueError(f"ImageData.captions must hold one caption per example, got {len(self.captions)} for "
                             f"{len(self.x)}")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example: (C, H, W) for images, (D,) for points."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        """Number of examples N."""
        return int(self.x.shape[0])


def to_unit_range(images: np.ndarray) -> Tensor:
    """Map uint8 pixels 0..255 to float32 in [-1, 1] via x / 127.5 - 1 (shape unchanged)."""
    if images.dtype != np.uint8:
        raise ValueError(f"to_unit_range expects uint8, got {images.dtype}")
    return torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(127.5).sub_(1.0)


def to_uint8(x: Tensor) -> np.ndarray:
    """Map floats in [-1, 1] back to uint8 0..255 (clamped, rounded); shape unchanged."""
    return ((x.detach().to(torch.float32).clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset to build and how to preprocess it (the `data:` section of a config)."""

    name: str = "mnist"  # mnist, mnist_pairs (two digits side by side, captioned), brain (MNI152 axial slices), phantoms (CT ellipses), photos (scikit-image photo patches), folder, npz, moons, swiss_roll, gmm, breast_cancer, wine (table rows), co2 (weekly CO2 windows)
    path: str = ""  # folder of images (folder) or .npz file (npz); unused otherwise
    split: str = "train"  # MNIST split: train or test
    limit: int = 0  # 0 = all examples; else keep the first N
    image_size: int = 0  # 0 = keep size; else resize to image_size x image_size (PIL bilinear)
    channels: int = 0  # 0 = keep; 1 (grayscale) or 3 (RGB) converts
    num_points: int = 10000  # number of points drawn for the 2-D toy sets
    seed: int = 0  # seed for the toy sets' sampling
    latent: str = ""  # an autoencoder run (difflab train-autoencoder): train on its latents of this data instead
    latent_scale: float = 0.0  # latents are multiplied by it; 0: 1 / std of the training latents, fixed at the start
    latent_sha256: str = ""  # the autoencoder checkpoint's sha256, recorded at the start (a changed file is refused)
    heldout_pairs: bool = False  # mnist_pairs: no canvas of the held-out digit pairs (conditions/language.py HELD_OUT_PAIRS), to test composition
    class_names: tuple[str, ...] = ()  # the name of each label index, recorded at the start from labelled data (a folder's sub-folders or its classes.txt, MNIST's digits)

    @property
    def pixels(self) -> "DataConfig":
        """This config of the data itself, without the latent fields (a latent run's images, before encoding)."""
        return replace(self, latent="", latent_scale=0.0, latent_sha256="")

    def __post_init__(self) -> None:
        """Reject values that cannot work, with a one-line fix."""
        if self.name not in DATASET_NAMES:
            raise UserError(f"data.name must be one of {', '.join(DATASET_NAMES)}; got {self.name!r}")
        if not isinstance(self.path, str) or not isinstance(self.split, str):
            raise UserError("data.path and data.split must be strings: quote them in the config")
        if not isinstance(self.latent, str) or not isinstance(self.latent_sha256, str):
            raise UserError("data.latent and data.latent_sha256 must be strings: quote them in the config")
        if isinstance(self.latent_scale, bool) or not isinstance(self.latent_scale, (int, float)) or \
                not (self.latent_scale >= 0 and self.latent_scale < float("inf")):
            raise UserError(f"data.latent_scale must be a finite number >= 0 (0: from the data), got {self.latent_scale!r}")
        if not isinstance(self.class_names, (tuple, list)) or not all(isinstance(n, str) for n in self.class_names):
            raise UserError(f"data.class_names must be a list of names (recorded from the data), got {self.class_names!r}")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.heldout_pairs and self.name != "mnist_pairs":
            raise UserError(f"data.heldout_pairs applies to data.name=mnist_pairs, not {self.name!r}: drop it")
        if self.latent_scale and not self.latent:
            raise UserError("data.latent_scale is only read with data.latent (an autoencoder run): drop it")
        for field in ("limit", "image_size", "channels", "num_points", "seed"):
            if not _is_int(getattr(self, field)):
                raise UserError(f"data.{field} must be an integer, got {getattr(self, field)!r}")
        if self.name in ("folder", "npz") and not self.path:
            hint = "a folder of images" if self.name == "folder" else "a .npz file"
            raise UserError(f"data.path is required for data.name={self.name!r}: set it to {hint}")
        if self.path and self.name not in ("folder", "npz"):
            raise UserError(f"data.path is only read for data.name folder or npz, not {self.name!r}: drop --data-path "
                            "or pick --data folder / npz")
        if self.name in SPLIT_SETS and self.split not in ("train", "test"):
            raise UserError(f"data.split must be 'train' or 'test' for {self.name}, got {self.split!r}")
        if self.limit < 0:
            raise UserError(f"data.limit must be >= 0 (0 = all examples), got {self.limit}")
        if self.image_size < 0:
            raise UserError(f"data.image_size must be >= 0 (0 = keep the size), got {self.image_size}")
        if self.channels not in (0, 1, 3):
            raise UserError(f"data.channels must be 0 (keep), 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.num_points <= 0:
            raise UserError(f"data.num_points must be > 0, got {self.num_points}")
        if self.name in TOY_SETS + TABLE_SETS + SERIES_SETS and (self.image_size or self.channels):
            raise UserError(f"data.image_size and data.channels apply to images only: set them to 0 for data.name={self.name!r}")
