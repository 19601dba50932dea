"""The variational bound of the lecture, term by term: -L = -L_0 + sum_{t>1} L_{t-1} + L_T, in nats and bits/dim.

  L_0     = -E_{q(x_1|x_0)} log p_theta(x_0 | x_1)          reconstruction (discretized Gaussian for 8-bit data)
  L_{t-1} = E_{q(x_t|x_0)} KL(q(x_{t-1}|x_t,x_0) || p_theta(x_{t-1}|x_t))   denoising matching, t = 2..T
  L_T     = KL(q(x_T|x_0) || N(0, I))                        prior matching, no parameters
Every term is returned per image; here all are reported as positive costs (negative log-likelihood bound).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from difflab.errors import UserError
from difflab.losses.gaussian import discretized_gaussian_log_prob, gaussian_log_prob, normal_kl, on_8bit_grid
from difflab.condition import Condition
from difflab.prediction import Denoiser, Prediction, scales
from difflab.reverse import check_variance, reverse_logvar, reverse_mean, step_coefficients
from difflab.schedules.discrete import DiscreteSchedule
from difflab.utils import bcast, bits_per_dim


@dataclass(frozen=True)
class ELBOTerms:
    """Per-image terms of the bound, in nats."""

    L0: Tensor  # (B,) reconstruction cost -log p_theta(x_0 | x_1)
    Lt: Tensor  # (B, T-1) KL terms L_{t-1} for t = 2..T
    LT: Tensor  # (B,) prior term KL(q(x_T | x_0) || N(0, I))
    dims: int  # dimensions per image

    @property
    def nll(self) -> Tensor:
        """(B,) the negative ELBO in nats: an upper bound on -log p_theta(x_0)."""
        return self.L0 + self.Lt.sum(1) + self.LT

    @property
    def bpd(self) -> Tensor:
        """(B,) bits per dimension."""
        return bits_per_dim(self.nll, self.dims)


def prior_term(schedule: DiscreteSchedule, x0: Tensor) -> Tensor:
    """L_T = KL(N(sqrt(ab_T) x0, (1 - ab_T) I) || N(0, I)) summed over dimensions, (B,)."""
    ab = schedule.alpha_bars[schedule.T].to(x0.device)
    kl = normal_kl(ab.sqrt() * x0.double(), torch.log1p(-ab).expand_as(x0), torch.zeros_like(x0, dtype=torch.float64),
                   torch.zeros_like(x0, dtype=torch.float64))
    return kl.flatten(1).sum(1)


def step_terms(denoiser: Denoiser, schedule: DiscreteSchedule, x0: Tensor, t: Tensor, eps: Tensor, *,
               variance: str = "posterior", discrete: bool = True, cond: Optional[Condition] = None) -> Tensor:
    """(B,) the term of integer step t per image: L_0 where t = 1, L_{t-1} where t >= 2 (one x_t sample each)."""
    tt = t.double() / schedule.T
    alpha, sigma = scales(schedule, tt, x0)
    x_t = alpha * x0 + sigma * eps  # diffusion kernel
    return term_from_prediction(denoiser(x_t, tt, cond), schedule, x0, t, variance=variance, discrete=discrete)


def term_from_prediction(pred: Prediction, schedule: DiscreteSchedule, x0: Tensor, t: Tensor, *,
                         variance: str = "posterior", discrete: bool = True) -> Tensor:
    """(B,) L_0 (t = 1) or L_{t-1} (t >= 2) for a prediction made at x_t, integer steps t.

    The decoder p_theta(x_0 | x_1) of L_0 has variance beta_1 with variance='beta' (Sigma_t = beta_t at every t, as in
    Ho et al. 2020, sec. 3.2; beta_1 ~ Var[x_0 | x_1] for data spread wider than sqrt(beta_1)) and sigma_2^2 with
    'posterior' (sigma_1^2 = 0; DDPM's clipped log-variance). The DDPM reference code's 'fixedlarge' and improved DDPM's
    FIXED_LARGE (Nichol & Dhariwal 2021) use sigma_2^2 at t = 1 for the large variance too; difflab does not, so its
    'beta' L_0 differs from theirs (the other terms agree). 'learned' interpolates between beta_1 and sigma_2^2 at t = 1,
    as improved DDPM's learned range does.
    """
    T = schedule.T
    step = step_coefficients(schedule, t.double().cpu() / T, (t - 1).double().cpu() / T)
    floor = schedule.posterior_variance(torch.full_like(t.cpu(), 2))  # DDPM: sigma_2^2 at t = 1
    mu_theta = reverse_mean(step, pred).double()
    logvar = reverse_logvar(step, pred, variance, floor).double()
    # KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) for t >= 2
    x_t = pred.x_t.double()
    mu_q = bcast(step.c_xt, x_t) * x_t + bcast(step.c_x0, x_t) * x0.double()
    post = bcast(step.post_var.clamp_min(1e-30), x_t)
    kl = normal_kl(mu_q, torch.log(post).expand_as(mu_q), mu_theta, logvar).flatten(1).sum(1)
    # -log p_theta(x_0 | x_1) for t = 1
    ll = discretized_gaussian_log_prob if discrete else gaussian_log_prob
    rec = -ll(x0.double(), mu_theta, logvar).flatten(1).sum(1)
    return torch.where(t.to(kl.device) == 1, rec, kl)


def check_images(x0: Tensor) -> None:
    """The discretized decoder needs 8-bit data mapped to [-1, 1]."""
    if not on_8bit_grid(x0):
        lo, hi = float(x0.min()), float(x0.max())
        raise UserError(f"the bound on discrete pixels needs images on the 8-bit grid of [-1, 1] (x = k/127.5 - 1), "
                        f"got values in [{lo:.3g}, {hi:.3g}]: give the data as uint8 pixels 0..255 (e.g. a uint8 .npz)")


@torch.no_grad()
def elbo_exact(denoiser: Denoiser, schedule: DiscreteSchedule, x0: Tensor, *, variance: str = "posterior",
               discrete: bool = True, cond: Optional[Condition] = None, generator: Optional[torch.Generator] = None,
               t_chunk: int = 8) -> ELBOTerms:
    """All T terms per image (one x_t sample per term), in batches of t_chunk steps."""
    check_variance(variance)
    if discrete:
        check_images(x0)
    B, T = x0.shape[0], schedule.T
    terms = torch.empty(B, T, dtype=torch.float64)
    for start in range(1, T + 1, t_chunk):
        ts = torch.arange(start, min(T, start + t_chunk - 1) + 1)
        t = ts.repeat_interleave(B)  # (k B,)
        xs = x0.repeat(len(ts), *[1] * (x0.ndim - 1))
        eps = torch.randn(xs.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        c = cond.repeat(len(ts)) if cond is not None else None
        val = step_terms(denoiser, schedule, xs, t.to(x0.device), eps, variance=variance, discrete=discrete, cond=c)
        terms[:, ts - 1] = val.cpu().reshape(len(ts), B).T
    return ELBOTerms(terms[:, 0], terms[:, 1:], prior_term(schedule, x0).cpu(), x0[0].numel())


def default_proposal(schedule: DiscreteSchedule) -> Tensor:
    """p(t) over t = 1..T: half uniform, half proportional to the lecture's eps-weight (1-a_t)^2 / (2 s_t^2 a_t (1-ab_t))."""
    t = torch.arange(2, schedule.T + 1)
    a, ab = schedule.alphas[t], schedule.alpha_bars[t]
    w = (1 - a) ** 2 / (2 * schedule.posterior_variance(t) * a * (1 - ab))
    w = torch.cat([w[:1], w])  # t = 1 (the decoder) gets the weight of t = 2
    return 0.5 * w / w.sum() + 0.5 / schedule.T


@dataclass(frozen=True)
class ELBOEstimate:
    """Importance-sampled estimate of the negative ELBO per image, with its Monte Carlo standard error."""

    L0: Tensor  # (B,) reconstruction part (draws with t = 1)
    Lt: Tensor  # (B,) sum of the KL terms (draws with t >= 2)
    LT: Tensor  # (B,) prior term, exact
    stderr: Tensor  # (B,) Monte Carlo standard error of nll
    dims: int

    @property
    def nll(self) -> Tensor:
        """(B,) the negative ELBO in nats."""
        return self.L0 + self.Lt + self.LT

    @property
    def bpd(self) -> Tensor:
        return bits_per_dim(self.nll, self.dims)


@torch.no_grad()
def elbo_importance(denoiser: Denoiser, schedule: DiscreteSchedule, x0: Tensor, num_t: int = 64, *,
                    proposal: Optional[Tensor] = None, variance: str = "posterior", discrete: bool = True,
                    cond: Optional[Condition] = None, generator: Optional[torch.Generator] = None, t_chunk: int = 8) -> ELBOEstimate:
    """Unbiased: sum_t term_t = E_{t ~ p} [term_t / p(t)]; num_t draws per image, plus L_T in closed form."""
    check_variance(variance)
    if discrete:
        check_images(x0)
    if num_t < 2:
        raise UserError(f"the importance-sampled bound needs at least 2 draws of t per image, got {num_t}")
    p = default_proposal(schedule) if proposal is None else proposal.double() / proposal.sum()
    B = x0.shape[0]
    t = torch.multinomial(p.float().expand(B, -1), num_t, replacement=True, generator=generator) + 1  # (B, K)
    vals = torch.empty(B, num_t, dtype=torch.float64)  # term_t / p(t)
    for k0 in range(0, num_t, t_chunk):
        k = slice(k0, min(num_t, k0 + t_chunk))
        tk = t[:, k].T.reshape(-1)  # (k B,) draw-major
        n = tk.numel() // B
        xs = x0.repeat(n, *[1] * (x0.ndim - 1))
        eps = torch.randn(xs.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        c = cond.repeat(n) if cond is not None else None
        val = step_terms(denoiser, schedule, xs, tk.to(x0.device), eps, variance=variance, discrete=discrete, cond=c)
        vals[:, k] = (val.cpu() / p[tk - 1]).reshape(n, B).T
    first = t == 1
    L0, Lt = (vals * first).mean(1), (vals * ~first).mean(1)
    return ELBOEstimate(L0, Lt, prior_term(schedule, x0).cpu(), vals.std(1) / math.sqrt(num_t), x0[0].numel())
