"""Exact denoisers for analytic data: a Gaussian mixture has E[x_0 | x_t], hence every parameterization, in closed form."""
from __future__ import annotations

import torch
from torch import Tensor

from difflab.data.toy import GaussianMixture
from difflab.condition import Condition
from difflab.prediction import Prediction, scales
from difflab.schedules.base import Schedule


class MixtureDenoiser:
    """The Bayes-optimal denoiser of a Gaussian mixture under a schedule (an x0-prediction; float64 inside)."""

    def __init__(self, gmm: GaussianMixture, schedule: Schedule):
        self.gmm, self.schedule = gmm, schedule

    def __call__(self, x_t: Tensor, t: Tensor, cond: Condition | None = None) -> Prediction:
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        alpha, sigma = scales(self.schedule, t.double(), x_t)
        a64, s64 = self.schedule.alpha(t.double()).cpu(), self.schedule.sigma(t.double()).cpu()
        if bool((t == t[0]).all()):  # one noise level (every sampler): one solve
            x0 = self.gmm.posterior_mean(x_t, float(a64[0]), float(s64[0])).to(x_t)
            return Prediction.from_x0(x_t, alpha, sigma, x0)
        x0 = torch.empty_like(x_t, dtype=torch.float64)
        for a, s in torch.unique(torch.stack([a64, s64], 1), dim=0):  # one solve per noise level in the batch
            rows = (a64 == a) & (s64 == s)
            x0[rows.to(x_t.device)] = self.gmm.posterior_mean(x_t[rows.to(x_t.device)], float(a), float(s)).to(x_t.device)
        return Prediction.from_x0(x_t, alpha, sigma, x0.to(x_t.dtype))
