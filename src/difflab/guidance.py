"""Guidance as denoiser transforms (seed: 'Conditional sampling'): a guidance wraps a denoiser and is itself one, so
every guidance works with every sampler, and samplers stay no-grad (a transform enables gradients inside itself).

Classifier guidance (the seed's Bayes rule; Dhariwal & Nichol 2021), scale s on a noise-conditional classifier:
  grad log p_s(x_t | y) = grad log p(x_t) + s grad log p(y | x_t, t)        (s = 1: the exact conditional score)
Classifier-free guidance (Ho & Salimans 2022), scale w, **w = 1 is the conditional model** and w = 0 the
unconditional one:
  eps_w = eps(x_t, null) + w (eps(x_t, y) - eps(x_t, null))
i.e. the score of p(x_t) p(y | x_t)^w with the implicit classifier p(y | x_t) = p(x_t | y) / p(x_t): w > 1 moves
mass to where the class is most certain (sharper, less diverse samples). Both halves run as one doubled batch.
A guidance interval (Kynkäänniemi et al. 2024) applies the scale only for sigma~ = sigma / alpha in [lo, hi]; outside
it the conditional model runs alone (one evaluation, not two).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from difflab.condition import LABEL, Condition
from difflab.errors import UserError
from difflab.precond import sigma_tilde
from difflab.prediction import Denoiser, Prediction
from difflab.schedules.base import Schedule

Logits = Callable[[Tensor, Tensor], Tensor]  # (x_t (B, ...), t (B,) float64) -> (B, classes) logits of p(y | x_t, t)


def check_scale(scale: float, what: str = "guidance scale") -> float:
    """A finite, non-negative number."""
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise UserError(f"the {what} must be a number, got {scale!r}") from None
    if not math.isfinite(scale) or scale < 0:
        raise UserError(f"the {what} must be a finite number >= 0, got {scale}")
    return scale


def check_interval(interval: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
    """(lo, hi) noise levels sigma~ with 0 <= lo < hi, or None (every level)."""
    if interval is None:
        return None
    lo, hi = (float(v) for v in interval)
    if not (math.isfinite(lo) and 0 <= lo < hi):
        raise UserError(f"the guidance interval must be noise levels lo,hi with 0 <= lo < hi (sigma / alpha), got "
                        f"{lo:g},{hi:g}")
    return lo, hi


def _labels(cond: Optional[Condition]) -> Tensor:
    if cond is None or LABEL not in cond.fields:
        raise UserError("guidance needs class labels to guide towards: pass classes (--class)")
    return cond[LABEL]


class ClassifierGuidance:
    """Denoiser transform: score + scale * grad_x log p(y | x_t, t), y = cond['label'] (the seed's Bayes rule).

    The gradient is taken with autograd enabled inside this call only; the wrapped denoiser sees `cond` only if
    `pass_cond` (a conditional model guided further), else None (an unconditional model).
    """

    def __init__(self, denoiser: Denoiser, classifier: Logits, scale: float = 1.0, pass_cond: bool = False):
        self.denoiser, self.classifier, self.pass_cond = denoiser, classifier, pass_cond
        self.scale = check_scale(scale)

    def grad_log_p(self, x_t: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """grad_x log p(y | x_t, t) (B, ...), the classifier in float32 or wider."""
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            logp = F.log_softmax(self.classifier(x, t).double(), dim=-1)
            (g,) = torch.autograd.grad(logp.gather(1, y.view(-1, 1).to(logp.device)).sum(), x)
        return g.to(x_t.dtype)

    def __call__(self, x_t: Tensor, t: Tensor, cond: Optional[Condition] = None) -> Prediction:
        y = _labels(cond)
        pred = self.denoiser(x_t, t, cond if self.pass_cond else None)
        if self.scale == 0:
            return pred
        t = torch.as_tensor(t, dtype=torch.float64).expand(x_t.shape[0])
        score = pred.score + self.scale * self.grad_log_p(x_t, t, y)  # grad log p(x_t) + s grad log p(y | x_t)
        guided = Prediction.from_score(x_t, pred.alpha, pred.sigma, score)
        return Prediction(guided.x_t, guided.alpha, guided.sigma, guided.x0, guided.eps, pred.var_frac)


class ClassifierFreeGuidance:
    """Denoiser transform: eps(null) + w (eps(y) - eps(null)) from one call on the doubled batch [x; x] with
    conditions [c; null]; w = 1 is the conditional model. With `interval` (lo, hi) on sigma~ the scale applies only
    there (the schedule is needed to read sigma~); elsewhere the conditional model runs alone."""

    def __init__(self, denoiser: Denoiser, scale: float, schedule: Optional[Schedule] = None,
                 interval: Optional[tuple[float, float]] = None):
        self.denoiser, self.scale, self.schedule = denoiser, check_scale(scale), schedule
        self.interval = check_interval(interval)
        if self.interval is not None and schedule is None:
            raise ValueError("a guidance interval needs the schedule (to read sigma~ at t)")

    def active(self, t: Tensor) -> bool:
        """Whether the scale applies at t (every row of a sampler step shares it)."""
        if self.scale == 1:
            return False
        if self.interval is None:
            return True
        s = float(sigma_tilde(self.schedule, torch.as_tensor(t, dtype=torch.float64).reshape(-1)[:1]))
        return self.interval[0] <= s <= self.interval[1]

    def __call__(self, x_t: Tensor, t: Tensor, cond: Optional[Condition] = None) -> Prediction:
        if cond is None:
            raise UserError("classifier-free guidance needs a condition to guide towards (e.g. --class)")
        if not self.active(t):
            return self.denoiser(x_t, t, cond)
        t = torch.as_tensor(t, dtype=torch.float64).expand(x_t.shape[0])
        both = self.denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), cond.cat(cond.null()))  # (2B, ...)
        eps_c, eps_u = both.eps.chunk(2)
        alpha, sigma = both.alpha.chunk(2)[0], both.sigma.chunk(2)[0]
        pred = Prediction.from_eps(x_t, alpha, sigma, eps_u + self.scale * (eps_c - eps_u))
        var = both.var_frac.chunk(2)[0] if both.var_frac is not None else None
        return Prediction(pred.x_t, pred.alpha, pred.sigma, pred.x0, pred.eps, var)
