"""Accelerated MRI: y = M F x, F the orthonormal 2-D FFT, M a Cartesian undersampling mask (whole phase-encode
columns of k-space kept: all of the centre's, the rest at random) with acceleration R = columns / kept columns.
k-space stays complex. For a real image F x is Hermitian, (F x)[-k] = conj (F x)[k], so the pseudo-inverse fills each
unsampled column whose mirror was sampled before the inverse FFT: A A^+ y = y exactly (zero-filling alone would not).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from difflab.errors import UserError
from difflab.operators.operator import Operator


def cartesian_mask(width: int, acceleration: int, center_fraction: float, seed: int = 0) -> Tensor:
    """(width,) 0/1 columns in FFT order (frequency 0 at index 0): round(center_fraction * width) lowest frequencies
    and random others, width / acceleration in all; refused when the width cannot take that acceleration."""
    if not (isinstance(acceleration, int) and acceleration >= 1):
        raise UserError(f"the MRI acceleration must be a whole number >= 1, got {acceleration}")
    if width % acceleration:
        raise UserError(f"an image {width} columns wide cannot be sampled at acceleration {acceleration}: the "
                        f"acceleration must divide the width (e.g. {', '.join(str(a) for a in range(2, 9) if width % a == 0)})")
    keep, center = width // acceleration, round(center_fraction * width)
    if not 0 <= center_fraction < 1 or center > keep:
        raise UserError(f"the centre fraction {center_fraction:g} keeps {center} columns, more than the {keep} that "
                        f"acceleration {acceleration} allows: lower --center-fraction")
    freq = torch.fft.fftfreq(width) * width  # integer frequencies in FFT order
    order = torch.argsort(freq.abs(), stable=True)  # lowest |frequency| first
    mask = torch.zeros(width)
    mask[order[:center]] = 1
    rest = order[center:]
    g = torch.Generator().manual_seed(seed)
    mask[rest[torch.randperm(len(rest), generator=g)[: keep - center]]] = 1
    return mask


class MRI(Operator):
    """y = M F x (complex (B, C, H, W), zeros at unsampled columns); A^T y = Re F^H M y; A^+ the Hermitian-completed
    zero-filled inverse FFT (the classical 'zero-filled' reconstruction)."""

    name = "MRI"

    def __init__(self, shape: tuple[int, int, int], acceleration: int = 4, center_fraction: float = 0.08, seed: int = 0,
                 noise_std: float = 0.0, mask: Optional[Tensor] = None):
        super().__init__(shape, noise_std)
        W = self.shape[2]
        self.mask = cartesian_mask(W, acceleration, center_fraction, seed) if mask is None else mask.float()
        self.acceleration = W / float(self.mask.sum())
        mirror = torch.roll(torch.flip(self.mask, (0,)), 1)  # mask at -k
        self.mirror_only = mirror * (1 - self.mask)  # columns known only through their mirror

    def forward(self, x: Tensor) -> Tensor:
        return torch.fft.fft2(x.to(torch.float32), norm="ortho") * self.mask.to(x.device)

    def adjoint(self, y: Tensor) -> Tensor:
        return torch.fft.ifft2(y * self.mask.to(y.device), norm="ortho").real

    def pinv(self, y: Tensor) -> Tensor:
        y = y * self.mask.to(y.device)
        flipped = torch.roll(torch.flip(y, (-2, -1)), (1, 1), (-2, -1)).conj()  # conj y[-k]
        return torch.fft.ifft2(y + flipped * self.mirror_only.to(y.device), norm="ortho").real

    def mask_noise(self, n: Tensor) -> Tensor:
        return n * self.mask.to(n.device)

    def describe(self) -> str:
        return f"{math.floor(self.acceleration * 100) / 100:g}x accelerated, {int(self.mask.sum())} of {len(self.mask)} columns"

    tv_weight = 0.01

    def view(self, y: Tensor) -> Tensor:
        """The k-space log-magnitude, centred, in [-1, 1]."""
        mag = torch.fft.fftshift(torch.log1p(y.abs() * 10), dim=(-2, -1))
        v = mag / mag.flatten(1).amax(1).clamp_min(1e-6).reshape(-1, 1, 1, 1) * 2 - 1
        return torch.nn.functional.interpolate(v.float(), size=self.shape[-2:], mode="nearest").clamp(-1, 1)

    def classical(self, y: Tensor) -> dict[str, Tensor]:
        return {"zero-filled IFFT": self.pinv(y)}
