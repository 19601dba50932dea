"""Linear measurement operators y = A x + n, n ~ N(0, noise_std^2 I) (seed: 'solving inverse problems'): forward,
adjoint and, where it exists, the pseudo-inverse A^+ (A A^+ y = y on the range of A).

The adjoint is for the real inner product <a, b> = Re sum conj(a) b, so complex measurements (MRI k-space) and real
images pair exactly: <A x, y> = <x, A^T y> to float precision for every operator (tests/test_operators.py).
Images are (B, C, H, W); the operator is built for one image shape and refuses others in one line.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from difflab.errors import UserError
from difflab.operators.tv import tv_least_squares


class Operator:
    """A linear map from images of `shape` (C, H, W) to measurements, with Gaussian measurement noise."""

    name = "operator"

    def __init__(self, shape: tuple[int, int, int], noise_std: float = 0.0):
        self.shape = tuple(int(v) for v in shape)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise UserError(f"an operator takes images (C, H, W), got shape {shape}")
        if not (math.isfinite(noise_std) and noise_std >= 0):
            raise UserError(f"the measurement noise must be a finite number >= 0, got {noise_std}")
        self.noise_std = float(noise_std)

    # -- the map ------------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def pinv(self, y: Tensor) -> Tensor:
        """A^+ y: the least-squares image of minimum norm; operators without a cheap one raise NotImplementedError."""
        raise NotImplementedError

    @property
    def has_pinv(self) -> bool:
        return type(self).pinv is not Operator.pinv

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(self.check(x))

    # -- measurements -------------------------------------------------------------------------------------------
    def measure(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """y = A x + noise_std n (complex measurements: n has independent real and imaginary parts of variance
        noise_std^2 / 2, so E|n|^2 = noise_std^2 per entry)."""
        y = self(x)
        if self.noise_std == 0:
            return y
        n = torch.randn(y.shape, generator=generator, dtype=torch.float32).to(y.device)
        if y.is_complex():
            n = torch.complex(n, torch.randn(y.shape, generator=generator).to(y.device)) / math.sqrt(2)
        return y + self.noise_std * self.mask_noise(n)

    def mask_noise(self, n: Tensor) -> Tensor:
        """Noise on the entries that are measured (operators with zero-padded measurements override this)."""
        return n

    def norm(self, iters: int = 30) -> float:
        """||A||_2 by power iteration on A^T A (computed once per operator)."""
        if getattr(self, "_norm", None) is None:
            x = torch.randn(1, *self.shape, generator=torch.Generator().manual_seed(0))
            for _ in range(iters):
                x = self.adjoint(self.forward(x))
                x = x / x.norm()
            self._norm = math.sqrt(float(self.adjoint(self.forward(x)).flatten().dot(x.flatten())))
        return self._norm

    def consistency(self, x: Tensor, y: Tensor) -> Tensor:
        """||A x - y|| / ||y|| per example (B,)."""
        r = (self(x) - y).flatten(1).abs().norm(dim=1)
        return r / y.flatten(1).abs().norm(dim=1).clamp_min(1e-12)

    def check(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise UserError(f"the {self.name} operator was built for images {self.shape}, got {tuple(x.shape)}: build it "
                            "for the image size, or resize the image")
        return x

    def check_measurement(self, y: Tensor) -> Tensor:
        """Refuse a measurement of another size or kind (complex for a real A) than A x, or with NaN / inf values."""
        ref = self.forward(torch.zeros(1, *self.shape))
        want = tuple(ref.shape[1:])
        if tuple(y.shape[1:]) != want:
            raise UserError(f"the {self.name} measurement must be {want} per image, got {tuple(y.shape[1:])}")
        if y.is_complex() != ref.is_complex():
            kind = "complex (k-space)" if ref.is_complex() else "real"
            raise UserError(f"the {self.name} measurement must be {kind}, got {'complex' if y.is_complex() else 'real'} "
                            "values: measure with this task's operator")
        if not bool(torch.isfinite(y).all()):
            raise UserError(f"the {self.name} measurement holds NaN or infinite values")
        return y

    # -- what a restoration shows beside the diffusion posterior -------------------------------------------------
    tv_weight = 0.01  # TV baseline's lambda at the measurement noise tv_noise (tuned per operator by bench/inverse.py)
    tv_noise = 0.01

    @property
    def tv_lambda(self) -> float:
        """The TV baseline's weight: tv_weight up to the noise it was tuned at, in proportion to the noise above it."""
        return self.tv_weight * max(1.0, self.noise_std / self.tv_noise)

    def classical(self, y: Tensor) -> dict[str, Tensor]:
        """This operator's own classical reconstructions, by name (beside TV, which every operator has)."""
        return {}

    def baselines(self, y: Tensor) -> dict[str, Tensor]:
        """The classical reconstructions to beat, clamped to [-1, 1]: the operator's own, then TV-regularized least
        squares (for any operator: it needs A and A^T only)."""
        out = {**self.classical(y), "TV": tv_least_squares(self, y, self.tv_lambda)}
        return {k: v.clamp(-1, 1) for k, v in out.items()}

    def view(self, y: Tensor) -> Tensor:
        """The measurement as an image (B, C, H, W) in [-1, 1] for a figure: A^+ y where it exists, else the
        measurement's own range stretched to [-1, 1] and resized to the image (a sinogram, say)."""
        if self.has_pinv:
            return self.pinv(y).clamp(-1, 1)
        v = y.abs() if y.is_complex() else y
        v = v.reshape(len(v), 1, *v.shape[-2:]) if v.ndim != 4 else v
        lo, hi = (u.reshape(-1, 1, 1, 1) for u in (v.flatten(1).amin(1), v.flatten(1).amax(1)))
        v = (v - lo) / (hi - lo).clamp_min(1e-6) * 2 - 1
        v = F.interpolate(v.float(), size=self.shape[-2:], mode="nearest")
        return v.expand(-1, self.shape[0], -1, -1) if v.shape[1] == 1 else v
