"""Sparse-view CT: the parallel-beam Radon transform in torch, on any set of angles, with its exact adjoint.

Geometry as scikit-image's `radon(image, theta, circle=True)`: for angle theta the image is rotated about pixel
(N // 2, N // 2) by bilinear interpolation (zero outside) and summed along its rows, so detector bin c of view theta
is the line integral along

    (row, col) = (N//2 + (r - N//2) cos theta - (c - N//2) sin theta,  N//2 + (c - N//2) cos theta + (r - N//2) sin theta),

r = 0..N-1. A sinogram is (B, C, views, N). The transform is linear in the image, so its adjoint (back-projection
A^T) is the vector-Jacobian product of the forward map: exact to float precision by construction.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from difflab.errors import UserError
from difflab.operators.operator import Operator


def view_angles(views: int, span: float = 180.0) -> Tensor:
    """`views` equally spaced angles in degrees over [0, span)."""
    if not (isinstance(views, int) and views >= 1):
        raise UserError(f"CT needs a whole number of views >= 1, got {views}")
    return torch.arange(views, dtype=torch.float64) * span / views


def _grid(angles_deg: Tensor, n: int) -> Tensor:
    """(1, views * N, N, 2) grid_sample coordinates (x = col, y = row, normalized with align_corners=True)."""
    th = torch.deg2rad(angles_deg.double())[:, None, None]  # (A, 1, 1)
    c0 = n // 2
    r = torch.arange(n, dtype=torch.float64)[None, :, None] - c0  # ray parameter (rows)
    c = torch.arange(n, dtype=torch.float64)[None, None, :] - c0  # detector bin (cols)
    cos, sin = torch.cos(th), torch.sin(th)
    col = c0 + c * cos + r * sin  # (A, N, N)
    row = c0 - c * sin + r * cos
    grid = torch.stack([col, row], dim=-1) * (2.0 / (n - 1)) - 1.0
    return grid.reshape(1, -1, n, 2).float()


class Radon(Operator):
    """y = R x: (B, C, N, N) -> (B, C, views, N) sinogram; A^T the exact back-projection."""

    name = "CT"

    def __init__(self, shape: tuple[int, int, int], angles: Sequence[float] | Tensor | int = 30,
                 noise_std: float = 0.0):
        super().__init__(shape, noise_std)
        _, H, W = self.shape
        if H != W or H < 4:
            raise UserError(f"CT takes square images, got {H}x{W}: crop or resize to N x N")
        self.angles = view_angles(angles) if isinstance(angles, int) else torch.as_tensor(angles, dtype=torch.float64)
        self.n, self.grid = H, _grid(self.angles, H)

    @property
    def views(self) -> int:
        return len(self.angles)

    def forward(self, x: Tensor) -> Tensor:
        B, C, N, _ = x.shape
        g = self.grid.to(x.device, x.dtype).expand(B * C, -1, -1, -1)
        s = F.grid_sample(x.reshape(B * C, 1, N, N), g, mode="bilinear", padding_mode="zeros", align_corners=True)
        return s.reshape(B, C, self.views, N, N).sum(3)  # sum over the ray (rows): (B, C, views, N)

    def adjoint(self, y: Tensor) -> Tensor:
        x = torch.zeros(y.shape[0], *self.shape, dtype=y.dtype, device=y.device, requires_grad=True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad((self.forward(x) * y).sum(), x)  # <R x, y> is linear in x: grad = R^T y
        return g

    def fbp(self, y: Tensor) -> Tensor:
        """Filtered back-projection: each view convolved with the ramp filter, then R^T scaled by pi / (2 views)
        (Kak & Slaney, Eq. 61: the ramp built from its band-limited spatial response, so the DC term is right)."""
        n = y.shape[-1]
        pad = max(64, 2 ** math.ceil(math.log2(2 * n)))
        h = torch.zeros(pad, dtype=torch.float64)
        odd = torch.cat([torch.arange(1, pad // 2 + 1, 2), torch.arange(pad // 2 - 1, 0, -2)]).double()
        h[0], h[1::2] = 0.25, -1.0 / (math.pi * odd) ** 2
        ramp = (2 * torch.fft.fft(h).real).to(y.dtype).to(y.device)  # (pad,)
        q = torch.fft.ifft(torch.fft.fft(y, n=pad) * ramp).real[..., :n]
        return self.adjoint(q) * math.pi / (2 * self.views)

    tv_weight, tv_noise = 0.1, 0.3  # tuned at low-dose sinogram noise (docs/inverse.md)

    def classical(self, y: Tensor) -> dict[str, Tensor]:
        return {"FBP": self.fbp(y)}
