"""Restoration quality: PSNR and SSIM from scikit-image (a well-kept implementation), on images in [-1, 1] mapped
to [0, 1] with data_range 1, and measurement consistency ||A x - y|| / ||y||."""
from __future__ import annotations

import numpy as np
from torch import Tensor

from difflab.errors import UserError


def _skimage():
    try:
        from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    except ImportError:
        raise UserError("restoration metrics need scikit-image: pip install scikit-image (make setup installs it)") from None
    return peak_signal_noise_ratio, structural_similarity


def quality(x: Tensor, truth: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(PSNR in dB, SSIM) per image of (B, C, H, W) in [-1, 1] against the truth."""
    psnr_fn, ssim_fn = _skimage()
    a = ((x.detach().float().clamp(-1, 1) + 1) / 2).cpu().numpy()
    b = ((truth.detach().float().clamp(-1, 1) + 1) / 2).cpu().numpy()
    psnr = np.array([psnr_fn(t, r, data_range=1.0) for r, t in zip(a, b)])
    ssim = np.array([ssim_fn(t, r, data_range=1.0, channel_axis=0) for r, t in zip(a, b)])
    return psnr, ssim
