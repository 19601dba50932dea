"""Medical and phantom images from packages that ship them (nothing is downloaded):

* brain: axial slices of the MNI152 T1 template inside `nilearn` (read with `nibabel`), 1 mm, cropped to the head
  and resized; training levels and held-out levels are separate bands of the head with gaps between them, and the
  training slices are augmented by small random rotations and scalings (seeded);
* out-of-distribution test images: `pydicom`'s CT_small and MR_small test files and the MRI slice in matplotlib's
  sample data;
* phantoms for CT: random ellipse phantoms generated here (Shepp-Logan-like: a skull, a brain, inner ellipses of
  random intensity, and a smooth tissue texture inside the head, since real tissue is not piecewise constant), and
  scikit-image's Shepp-Logan phantom.
All images come out (N, 1, S, S) float32 in [-1, 1].
"""
from __future__ import annotations

import gzip
import math

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from difflab.errors import need

TRAIN_LEVELS = tuple(range(30, 105)) + tuple(range(140, 160))  # axial z (mm) of the 1 mm template
TEST_LEVELS = tuple(range(115, 130))  # held out, >= 10 mm from every training level



def to_unit(img: np.ndarray) -> np.ndarray:
    """Intensities scaled to [-1, 1] by the 0.5th and 99.5th percentiles (the background at -1)."""
    img = img.astype(np.float64)
    lo, hi = np.percentile(img, 0.5), np.percentile(img, 99.5)
    return (np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1) * 2 - 1).astype(np.float32)


def resize(x: Tensor, size: int) -> Tensor:
    """(N, 1, H, W) -> (N, 1, size, size), area-averaged (antialiased) then clamped to [-1, 1]."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)


def _augment(x: Tensor, copies: int, seed: int) -> Tensor:
    """x and `copies` - 1 variants rotated by up to 10 degrees and scaled by 0.92..1.08 (bilinear, -1 outside)."""
    g = torch.Generator().manual_seed(seed)
    out = [x]
    for _ in range(copies - 1):
        ang = (torch.rand(len(x), generator=g) * 2 - 1) * math.radians(10)
        sc = 1 + (torch.rand(len(x), generator=g) * 2 - 1) * 0.08
        theta = torch.zeros(len(x), 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(ang) / sc, -torch.sin(ang) / sc
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(ang) / sc, torch.cos(ang) / sc
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out.append(F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1)
    return torch.cat(out)


def brain_slices(size: int = 64, split: str = "train", copies: int = 8, seed: int = 0) -> Tensor:
    """Axial MNI152 slices (N, 1, size, size): the training levels (each with `copies` augmented variants) or the
    held-out levels (unaugmented)."""
    datasets = need("nilearn.datasets", "nilearn")
    vol = np.asarray(datasets.load_mni152_template(resolution=1).get_fdata(), dtype=np.float32)  # (197, 233, 189)
    levels = TRAIN_LEVELS if split == "train" else TEST_LEVELS
    sl = vol[:, 20:217, list(levels)].transpose(2, 1, 0)[:, ::-1]  # (N, 197 rows (anterior up), 197 cols)
    x = torch.from_numpy(to_unit(np.ascontiguousarray(sl)))[:, None]
    x = resize(x, size)
    return _augment(x, copies, seed) if split == "train" else x


def smooth_field(g: np.random.Generator, size: int, width: float) -> np.ndarray:
    """(size, size) Gaussian random field of unit standard deviation, white noise low-passed by a Gaussian of `width`
    pixels (in Fourier space: periodic)."""
    f = np.fft.fftfreq(size)
    gain = np.exp(-2 * (math.pi * width) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    field = np.fft.ifft2(np.fft.fft2(g.standard_normal((size, size))) * gain).real
    return field / field.std()


def ellipse_phantoms(n: int, size: int = 64, seed: int = 0, texture: float = 0.08) -> Tensor:
    """(n, 1, size, size) random phantoms inside the inscribed circle: a bright skull ring, a grey brain and 3-8 inner
    ellipses of random position, size, angle and intensity, all inside the head modulated by a smooth texture
    (1 + texture * a Gaussian field of width size / 16)."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    u, v = (xx - size // 2) / (size / 2), (yy - size // 2) / (size / 2)  # [-1, 1], centred like the Radon transform
    out = np.zeros((n, size, size), np.float32)

    def ellipse(cx, cy, a, b, ang):
        c, s = math.cos(ang), math.sin(ang)
        return (((u - cx) * c + (v - cy) * s) / a) ** 2 + ((-(u - cx) * s + (v - cy) * c) / b) ** 2 <= 1

    for k in range(n):
        a, b, ang = g.uniform(0.7, 0.88), g.uniform(0.8, 0.92), g.uniform(-0.3, 0.3)
        img = np.where(ellipse(0, 0, a, b, ang), 1.0, 0.0)  # skull
        img = np.where(ellipse(0, 0, a - 0.06, b - 0.06, ang), 0.3, img)  # brain
        for _ in range(g.integers(3, 9)):
            r = g.uniform(0.05, 0.3)
            cx, cy = g.uniform(-0.45, 0.45, 2)
            img = np.where(ellipse(cx, cy, r, r * g.uniform(0.4, 1.0), g.uniform(0, math.pi)), g.uniform(0.0, 0.8), img)
        out[k] = np.clip(img * (1 + texture * smooth_field(g, size, size / 16)), 0, 1)
    return torch.from_numpy(out * 2 - 1)[:, None]


def shepp_logan(size: int = 64) -> Tensor:
    """scikit-image's Shepp-Logan phantom (1, 1, size, size) in [-1, 1]."""
    data = need("skimage.data", "scikit-image")
    x = torch.from_numpy(data.shepp_logan_phantom().astype(np.float32))[None, None]
    return resize(x * 2 - 1, size)


def ood_medical(size: int = 64) -> dict[str, Tensor]:
    """Out-of-distribution test slices: pydicom's CT_small and MR_small, matplotlib's sample MRI; (1, 1, S, S) each."""
    pydicom = need("pydicom", "pydicom")
    from pydicom.data import get_testdata_file
    import matplotlib.cbook as cbook

    out = {}
    for name in ("CT_small", "MR_small"):
        ds = pydicom.dcmread(get_testdata_file(f"{name}.dcm"))
        out[name] = torch.from_numpy(to_unit(ds.pixel_array))[None, None]
    with cbook.get_sample_data("s1045.ima.gz") as f:
        raw = gzip.GzipFile(fileobj=f).read() if not isinstance(f, gzip.GzipFile) else f.read()
    out["matplotlib_mri"] = torch.from_numpy(to_unit(np.frombuffer(raw, np.uint16).reshape(256, 256)))[None, None]
    return {k: resize(v, size) for k, v in out.items()}
