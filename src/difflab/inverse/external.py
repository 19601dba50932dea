"""Degraded inputs made outside difflab, read as they are into (y, the operator that made them): a low-resolution
image (the factor from the size ratio), an image and its mask, a blurred image and its kernel (or Gaussian width),
k-space and its column mask, a sinogram and its angles. The noise level is given, or for images estimated from y
itself: sigma = median |d| / 0.6745 over its finest details d (Donoho & Johnstone 1994): where the image is smooth
they are mostly noise, and the median ignores the edges where it is not."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from difflab.errors import UserError
from difflab.inverse.inputs import load_image, load_images, load_mask
from difflab.operators import MRI, Blur, Downsample, Inpaint, Operator, Radon

MAD_GAUSSIAN = 0.6745  # median |n| / sigma for Gaussian n


def estimate_noise(d: Tensor) -> float:
    """Donoho's MAD estimate of a noise std from detail coefficients `d` that carry the noise's own std."""
    if not d.numel():
        raise UserError("too little of the measurement to estimate its noise: pass --noise")
    return float(d.abs().double().median()) / MAD_GAUSSIAN


def details(y: Tensor, op: Operator) -> Tensor:
    """The 2 x 2 diagonal Haar details HH / 2 of an image measurement (inside an inpainting mask): white noise's std,
    where the image is smooth. k-space and sinograms have no such part (an image's own high frequencies fill k-space's
    corners; a projection's curvature is everywhere): their noise must be given."""
    if y.is_complex() or isinstance(op, Radon):
        raise UserError(f"the noise of {op.name} data cannot be told from its signal: pass --noise (its std per "
                        f"{'k-space entry' if y.is_complex() else 'sinogram bin'})")
    H, W = y.shape[-2] // 2 * 2, y.shape[-1] // 2 * 2
    a = y[..., :H, :W]
    hh = (a[..., 0::2, 0::2] - a[..., 0::2, 1::2] - a[..., 1::2, 0::2] + a[..., 1::2, 1::2]) / 2
    if isinstance(op, Inpaint):
        m = op.mask[0, :H, :W]
        return hh[..., (m[0::2, 0::2] * m[0::2, 1::2] * m[1::2, 0::2] * m[1::2, 1::2]).bool()]
    return hh


def _array(path: str, what: str) -> np.ndarray:
    """A plain numeric .npy (never unpickled)."""
    p = Path(path)
    if p.suffix.lower() != ".npy" or not p.is_file():
        raise UserError(f"{what} must be an existing .npy file, got {path}")
    try:
        a = np.load(p, allow_pickle=False)
    except ValueError:
        raise UserError(f"{path} is not a plain .npy array (object arrays are refused)") from None
    if not np.issubdtype(a.dtype, np.number):
        raise UserError(f"{path} must hold numbers, got {a.dtype}")
    return a


def _per_image(a: np.ndarray, channels: int, path: str, what: str) -> Tensor:
    """(H, W) or (C, H, W) -> (1, C, H, W)."""
    if a.ndim == 2:
        a = np.broadcast_to(a, (channels, *a.shape))
    if a.ndim != 3 or a.shape[0] != channels:
        raise UserError(f"{path} must hold {what} of shape (H, W) or ({channels}, H, W), got {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a))[None]


def _superres(path, shape, noise, opts) -> tuple[Tensor, Operator]:
    C, H, W = shape
    y = load_image(Path(path), C)[None].clamp(-1, 1)  # (1, C, h, w)
    h, w = y.shape[-2:]
    if H % h or W % w or H // h != W // w or H // h < 2:
        raise UserError(f"{path} is {h}x{w}: super-resolution to the run's {H}x{W} needs the same whole factor >= 2 "
                        f"on both sides (e.g. {H // 4}x{W // 4} for 4x)")
    return y, Downsample(H // h, shape, noise)


def _inpaint(path, shape, noise, opts) -> tuple[Tensor, Operator]:
    mask = opts.get("mask")
    if mask in (None, "box", "random"):
        raise UserError("a masked image needs its mask: pass --mask FILE (a PNG, white = observed, or a 0/1 .npy)")
    m = torch.from_numpy(_array(mask, "--mask").astype(np.float32)) if mask.endswith(".npy") else load_mask(mask)
    op = Inpaint(m, shape, noise)
    return op(load_images([path], shape, False)), op  # the unobserved pixels zeroed, whatever the file holds there


def _deblur(path, shape, noise, opts) -> tuple[Tensor, Operator]:
    kernel = opts.get("kernel")
    k = torch.from_numpy(_array(kernel, "--kernel").astype(np.float32)) if kernel else None
    return load_images([path], shape, False), Blur(0.0 if k is not None else opts["blur"], shape, noise, kernel=k)


def _mri(path, shape, noise, opts) -> tuple[Tensor, Operator]:
    a = _array(path, "k-space")
    if not np.iscomplexobj(a):
        raise UserError(f"{path} must hold complex k-space (numpy.fft.fft2 order, norm='ortho'), got {a.dtype}")
    y = _per_image(a.astype(np.complex64), shape[0], path, "k-space")
    mask = opts.get("mask")
    if mask in (None, "box", "random"):  # the sampled columns: those holding any non-zero entry
        cols = (y.abs().sum((0, 1, 2)) > 0).float()
    else:
        m = _array(mask, "--mask").astype(np.float32)
        cols = torch.from_numpy(m if m.ndim == 1 else m.max(0))
    if cols.shape != (shape[2],) or not bool(((cols == 0) | (cols == 1)).all()) or not cols.any():
        raise UserError(f"the k-space column mask must be 0/1 of length {shape[2]} (or an (H, W) mask of whole columns), "
                        f"got {tuple(cols.shape)}")
    return y, MRI(shape, noise_std=noise, mask=cols)


def _ct(path, shape, noise, opts) -> tuple[Tensor, Operator]:
    a = _array(path, "the sinogram")
    y = _per_image(a.astype(np.float32), shape[0], path, "a sinogram (views, N)")
    angles = opts.get("angles")
    theta = _array(angles, "--angles").astype(np.float64).ravel() if angles else np.arange(y.shape[2]) * 180 / y.shape[2]
    if len(theta) != y.shape[2]:
        raise UserError(f"--angles holds {len(theta)} angles but the sinogram has {y.shape[2]} views")
    return y, Radon(shape, torch.from_numpy(theta), noise)


READERS: dict[str, Callable] = {"superres": _superres, "inpaint": _inpaint, "deblur": _deblur, "mri": _mri, "ct": _ct}


def read_external(path: str, task: str, shape: tuple[int, int, int], noise: Optional[float],
                  log: Callable[[str], None] = print, **opts) -> tuple[Tensor, Operator]:
    """(y (1, ...), its operator) from a degraded file made outside difflab; `opts`: mask, kernel, blur, angles."""
    y, op = READERS[task](path, shape, 0.0 if noise is None else noise, opts)
    y = op.check_measurement(y)
    if noise is None:
        noise = estimate_noise(details(y, op))
        log(f"noise: {noise:.4g} estimated from the measurement (median of its finest details; --noise to set it)")
        op.noise_std = noise
    return y, op
