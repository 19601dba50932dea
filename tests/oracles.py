"""Exact denoisers and shared checks for test data (the denoiser is checked against autograd in test_samplers)."""
import numpy as np
import torch

from difflab.data.toy import GaussianMixture
from difflab.eval.exact import MixtureDenoiser

__all__ = ["DigitReader", "MixtureDenoiser", "ring_quality"]


def ring_quality(x: torch.Tensor, gmm: GaussianMixture, std: float = 0.2) -> tuple[float, float]:
    """(mode-weight TV by nearest mean, share of points within 3 std of a mean) of samples x (N, D)."""
    d = torch.cdist(x.double(), gmm.means)  # (N, K)
    share = torch.bincount(d.argmin(1), minlength=len(gmm.weights)).double() / len(x)
    return 0.5 * (share - gmm.weights).abs().sum().item(), (d.min(1).values < 3 * std).double().mean().item()


class DigitReader:
    """Fisher's linear discriminant (class means, one shared covariance) fitted in closed form to the MNIST training
    digits at `size` x `size`: an independent reader of generated digits that needs no training run (it reads 82 % of
    real 8 x 8 test digits right)."""

    def __init__(self, size: int):
        from difflab.data.build import build_dataset
        from difflab.data.dataset import DataConfig

        data = build_dataset(DataConfig(name="mnist", split="train", image_size=size))
        x, y = data.x.flatten(1).double(), data.labels  # (N, size^2) in [-1, 1], (N,)
        self.means = torch.stack([x[y == k].mean(0) for k in range(10)])  # (10, size^2)
        cov = torch.cov((x - self.means[y]).T) + 1e-3 * torch.eye(x.shape[1], dtype=x.dtype)
        self.precision = torch.linalg.inv(cov)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Digits read from uint8 images (N, size, size): argmax_k of the discriminant x P mu_k - mu_k P mu_k / 2."""
        x = torch.from_numpy(images).double().flatten(1) / 127.5 - 1
        mp = self.means @ self.precision  # (10, size^2)
        return (x @ mp.T - 0.5 * (mp * self.means).sum(1)).argmax(1).numpy()
