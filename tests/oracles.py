"""Exact denoisers for test data: a Gaussian mixture has E[x0 | x_t] and the score in closed form."""
from __future__ import annotations

import torch
from torch import Tensor

from difflab.data.toy import GaussianMixture
from difflab.prediction import Prediction, scales


def posterior_mean_x0(gmm: GaussianMixture, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """E[x0 | x_t] for x_t = alpha x0 + sigma eps, x0 ~ GMM: responsibilities times component posterior means."""
    x = x_t.double()
    a, s = alpha.double().reshape(-1, 1, 1), sigma.double().reshape(-1, 1, 1)  # (B, 1, 1)
    D = gmm.dim
    eye = torch.eye(D, dtype=torch.float64)
    cov_t = a[..., None] ** 2 * gmm.covs[None] + s[..., None] ** 2 * eye  # (B, K, D, D)
    diff = x[:, None, :] - a * gmm.means[None]  # (B, K, D)
    sol = torch.linalg.solve(cov_t, diff.unsqueeze(-1)).squeeze(-1)  # (B, K, D)
    logdet = torch.logdet(cov_t)  # (B, K)
    logp = torch.log(gmm.weights)[None] - 0.5 * ((diff * sol).sum(-1) + logdet)
    resp = torch.softmax(logp, dim=1)  # (B, K)
    mean_k = gmm.means[None] + a * torch.einsum("kde,bke->bkd", gmm.covs, sol)  # mu_k + a S_k C_t^-1 (x - a mu_k)
    return (resp[..., None] * mean_k).sum(1)


class MixtureDenoiser:
    """The Bayes-optimal denoiser of a Gaussian mixture under a schedule (x0-prediction)."""

    def __init__(self, gmm: GaussianMixture, schedule):
        self.gmm, self.schedule = gmm, schedule

    def __call__(self, x_t: Tensor, t: Tensor, cond=None) -> Prediction:
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        alpha, sigma = scales(self.schedule, t, x_t)
        x0 = posterior_mean_x0(self.gmm, x_t, alpha.flatten(), sigma.flatten()).to(x_t.dtype)
        return Prediction.from_x0(x_t, alpha, sigma, x0)
