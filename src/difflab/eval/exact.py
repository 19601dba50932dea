"""Exact denoisers for analytic data: a Gaussian mixture has E[x_0 | x_t], hence every parameterization, in closed form."""
from __future__ import annotations

from typing import Callable

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


def component(gmm: GaussianMixture, k: int) -> GaussianMixture:
    """Component k alone: the data given the label y = k."""
    return GaussianMixture(gmm.weights[k:k + 1], gmm.means[k:k + 1], gmm.covs[k:k + 1])


class ConditionalMixtureDenoiser:
    """The Bayes-optimal denoiser of a labelled mixture (label = component): E[x_0 | x_t, y] from component y alone,
    E[x_0 | x_t] of the whole mixture for the null label (cond['label'] == K) or without a condition."""

    def __init__(self, gmm: GaussianMixture, schedule: Schedule):
        self.gmm, self.schedule = gmm, schedule
        self.parts = [MixtureDenoiser(component(gmm, k), schedule) for k in range(len(gmm.weights))]
        self.marginal = MixtureDenoiser(gmm, schedule)

    def __call__(self, x_t: Tensor, t: Tensor, cond: Condition | None = None) -> Prediction:
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        if cond is None:
            return self.marginal(x_t, t)
        y = cond["label"].to(x_t.device)
        x0 = torch.empty_like(x_t)
        for k in torch.unique(y).tolist():
            rows = y == k
            den = self.parts[k] if k < len(self.parts) else self.marginal
            x0[rows] = den(x_t[rows], t[rows]).x0
        alpha, sigma = scales(self.schedule, t.double(), x_t)
        return Prediction.from_x0(x_t, alpha, sigma, x0)


def mixture_logits(gmm: GaussianMixture, schedule: Schedule) -> Callable[[Tensor, Tensor], Tensor]:
    """The exact noise-conditional classifier of a labelled mixture: log p(y = k | x_t) up to a constant,
    log w_k + log N(x_t; alpha mu_k, alpha^2 Cov_k + sigma^2 I) (differentiable in x_t; one noise level per call)."""

    def logits(x_t: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)[:1]
        a, s = float(schedule.alpha(t)), float(schedule.sigma(t))
        return gmm.diffused(a, s)._component_log_probs(x_t)[0]

    return logits
