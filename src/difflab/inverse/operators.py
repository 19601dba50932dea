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


class Inpaint(Operator):
    """A = diag(mask): the observed pixels, zeros elsewhere; A^T = A^+ = A."""

    name = "inpainting"

    def __init__(self, mask: Tensor, shape: tuple[int, int, int], noise_std: float = 0.0):
        super().__init__(shape, noise_std)
        m = torch.as_tensor(mask).float()
        if m.ndim == 2:
            m = m.expand(self.shape[0], -1, -1)
        if tuple(m.shape) != self.shape or not bool(((m == 0) | (m == 1)).all()):
            raise UserError(f"the inpainting mask must be 0/1 of shape {self.shape[1:]} (or {self.shape}), got "
                            f"{tuple(torch.as_tensor(mask).shape)}")
        self.mask = m

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x)

    adjoint = pinv = forward

    def mask_noise(self, n: Tensor) -> Tensor:
        return n * self.mask.to(n)

    @classmethod
    def box(cls, shape: tuple[int, int, int], size: float = 0.5, noise_std: float = 0.0) -> "Inpaint":
        """The centre square of side size x H missing."""
        _, H, W = shape
        m = torch.ones(H, W)
        h, w = round(size * H), round(size * W)
        m[(H - h) // 2:(H - h) // 2 + h, (W - w) // 2:(W - w) // 2 + w] = 0
        return cls(m, shape, noise_std)

    @classmethod
    def random(cls, shape: tuple[int, int, int], missing: float = 0.7, seed: int = 0,
               noise_std: float = 0.0) -> "Inpaint":
        """Each pixel missing with probability `missing`."""
        g = torch.Generator().manual_seed(seed)
        return cls((torch.rand(shape[1:], generator=g) >= missing).float(), shape, noise_std)


class Downsample(Operator):
    """Super-resolution: A = k x k average pooling; A^T y = nearest-upsampled y / k^2; A^+ y = nearest-upsampled y."""

    name = "downsampling"

    def __init__(self, factor: int, shape: tuple[int, int, int], noise_std: float = 0.0):
        super().__init__(shape, noise_std)
        if not (isinstance(factor, int) and factor >= 2) or self.shape[1] % factor or self.shape[2] % factor:
            raise UserError(f"the downsampling factor must be an integer >= 2 dividing the image size "
                            f"{self.shape[1]}x{self.shape[2]}, got {factor}")
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.factor)  # (B, C, H/k, W/k)

    def pinv(self, y: Tensor) -> Tensor:
        return y.repeat_interleave(self.factor, -2).repeat_interleave(self.factor, -1)

    def adjoint(self, y: Tensor) -> Tensor:
        return self.pinv(y) / self.factor**2


def gaussian_kernel(sigma: float, size: int) -> Tensor:
    """(size, size) normalized Gaussian, centred at index size // 2."""
    r = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * sigma**2))
    return (k / k.sum()).float()


class Blur(Operator):
    """Gaussian blur with circular boundary, A = F^-1 diag(K) F: the blur is exactly diagonal in Fourier space (which
    Wiener deconvolution uses); A^T = F^-1 diag(conj K) F. No pseudo-inverse: K is near zero at high frequencies."""

    name = "blur"

    def __init__(self, sigma: float, shape: tuple[int, int, int], noise_std: float = 0.0, size: int | None = None):
        super().__init__(shape, noise_std)
        if not (math.isfinite(sigma) and sigma > 0):
            raise UserError(f"the blur width sigma must be a positive number of pixels, got {sigma}")
        size = size or 2 * math.ceil(3 * sigma) + 1
        _, H, W = self.shape
        if size > min(H, W):
            raise UserError(f"a blur of sigma {sigma:g} needs a {size}-pixel kernel, larger than the image {H}x{W}")
        self.sigma, self.kernel = float(sigma), gaussian_kernel(sigma, size)
        pad = torch.zeros(H, W)
        pad[:size, :size] = self.kernel
        pad = torch.roll(pad, (-(size // 2), -(size // 2)), (0, 1))  # kernel centre at (0, 0): no shift
        self.K = torch.fft.rfft2(pad)  # (H, W // 2 + 1) transfer function

    def _apply(self, x: Tensor, K: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(x) * K.to(x.device), s=x.shape[-2:])

    def forward(self, x: Tensor) -> Tensor:
        return self._apply(x, self.K)

    def adjoint(self, y: Tensor) -> Tensor:
        return self._apply(y, self.K.conj())
