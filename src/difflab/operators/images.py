"""The image operators: inpainting (a mask), super-resolution (average pooling) and deblurring (a Gaussian blur),
each with the classical reconstruction to beat: the masked input, bicubic upsampling, Wiener deconvolution."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from difflab.errors import UserError
from difflab.operators.operator import Operator


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

    tv_weight = 0.02

    def view(self, y: Tensor) -> Tensor:
        """The observed pixels, the unobserved ones at the background value -1."""
        return self.pinv(y) + (1 - self.mask.to(y)) * -1.0

    def classical(self, y: Tensor) -> dict[str, Tensor]:
        return {"masked input": self.view(y)}

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

    def classical(self, y: Tensor) -> dict[str, Tensor]:
        """The low-resolution image upsampled by bicubic interpolation."""
        return {"bicubic": F.interpolate(y, scale_factor=self.factor, mode="bicubic", align_corners=False)}


def gaussian_kernel(sigma: float, size: int) -> Tensor:
    """(size, size) normalized Gaussian, centred at index size // 2."""
    r = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * sigma**2))
    return (k / k.sum()).float()


class Blur(Operator):
    """Blur with circular boundary, A = F^-1 diag(K) F: the blur is exactly diagonal in Fourier space (which Wiener
    deconvolution uses); A^T = F^-1 diag(conj K) F. No pseudo-inverse: K is near zero at high frequencies. The kernel:
    a Gaussian of width sigma, or any given (k, k) array (odd k, centred at k // 2) with sigma=0."""

    name = "blur"

    def __init__(self, sigma: float, shape: tuple[int, int, int], noise_std: float = 0.0, size: int | None = None,
                 kernel: Tensor | None = None):
        super().__init__(shape, noise_std)
        _, H, W = self.shape
        if kernel is None:
            if not (math.isfinite(sigma) and sigma > 0):
                raise UserError(f"the blur width sigma must be a positive number of pixels, got {sigma}")
            size = size or 2 * math.ceil(3 * sigma) + 1
            if size > min(H, W):
                raise UserError(f"a blur of sigma {sigma:g} needs a {size}-pixel kernel, larger than the image {H}x{W}")
            kernel = gaussian_kernel(sigma, size)
        kernel = torch.as_tensor(kernel, dtype=torch.float32)
        size = kernel.shape[0]
        if kernel.ndim != 2 or kernel.shape[1] != size or size % 2 == 0 or size > min(H, W) or \
                not bool(torch.isfinite(kernel).all()):
            raise UserError(f"a blur kernel must be a finite square array of odd side at most {min(H, W)} (centred), "
                            f"got {tuple(kernel.shape)}")
        self.sigma, self.kernel = float(sigma), kernel
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

    tv_weight = 0.005
    nsr = 1e-3  # the Wiener filter's noise-to-signal power ratio (tuned by bench/inverse.py)

    def view(self, y: Tensor) -> Tensor:
        return y

    def classical(self, y: Tensor) -> dict[str, Tensor]:
        """Wiener deconvolution X = conj(K) Y / (|K|^2 + nsr): linear least squares for a noise-to-signal ratio."""
        K = self.K.to(y.device)
        return {"Wiener": torch.fft.irfft2(torch.fft.rfft2(y) * K.conj() / (K.abs() ** 2 + self.nsr), s=y.shape[-2:])}
