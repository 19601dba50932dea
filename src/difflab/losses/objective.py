"""The training objective: a batch and the step's per-example noise in, a per-example loss out. The one training loop
runs every objective (diffusion, VAE, noise-conditional classifier); each owns its noise-level distribution and
weighting.

Diffusion objectives (Precond's output F, F* the ideal output, s = sigma~):
  simple   w(s) |F - F*|^2                    Algorithm 1 (t uniform over the table, or U[t_min, 1] for an SDE)
  elbo     the bound's own term L_{t-1} (L_0 at t = 1) per dimension: T E_t[loss] is the negative ELBO
  hybrid   simple + hybrid_weight * elbo; with a learned variance the bound trains only the variance (improved DDPM)
  edm      lambda(s) |x0_hat - x0|^2, lambda = (s^2 + sd^2) / (s sd)^2, ln s ~ N(P_mean, P_std^2) (EDM sec. 5)
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Optional, Protocol

import torch
from torch import Tensor, nn

from difflab.condition import Condition
from difflab.errors import UserError
from difflab.losses.elbo import term_from_prediction
from difflab.losses.simple import output_error
from difflab.noise import NoiseSource
from difflab.precond import Parameterization, Precond, sigma_tilde
from difflab.prediction import Prediction
from difflab.schedules.base import Schedule



@dataclass(frozen=True)
class Batch:
    """One (micro-)batch: x (B, ...) and its condition (labels, ...) or None."""

    x: Tensor
    cond: Optional[Condition] = None


class Objective(Protocol):
    """What the training loop needs of an objective."""

    conditions: tuple[str, ...]  # the condition fields the loop hands it from the data (label, tokens)

    def loss(self, net: nn.Module, batch: Batch, noise: NoiseSource) -> Tensor:
        """(B,) per-example loss; every random draw comes from `noise` (example k's own stream)."""


def training_times(schedule: Schedule, u: Tensor, integer_steps: bool) -> Tensor:
    """t from uniforms u (B,): i / T with i ~ U{1..T} (Algorithm 1, line 3) on a table, else U[t_min, 1]."""
    T = schedule.steps
    if integer_steps and T is not None:
        return ((u * T).floor().clamp(max=T - 1) + 1) / T
    return schedule.t_min + (1 - schedule.t_min) * u


def log_normal_times(schedule: Schedule, u: Tensor, p_mean: float, p_std: float) -> Tensor:
    """t with ln sigma~(t) ~ N(p_mean, p_std^2) (EDM's training noise levels), clamped to [t_min, 1]."""
    log_s = p_mean + p_std * torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12))
    return schedule.t_of_log_snr(-2 * log_s).clamp(schedule.t_min, 1.0)


@dataclass(frozen=True)
class DiffusionObjective:
    """Algorithm 1 on a preconditioned network: t ~ times(u), eps ~ N(0, I), x_t = q_sample(x_0, t, eps), the network's
    output error |F - F*|^2; each subclass (one per train.objective, in OBJECTIVES) draws t and weighs the error."""

    schedule: Schedule
    param: Parameterization
    learn_variance: bool = False
    hybrid_weight: float = 1e-3
    cond_dropout: float = 0.0  # probability that an example's condition is replaced by its null value
    conditions: tuple[str, ...] = ()
    quantized: bool = True  # 8-bit data: the ELBO's L_0 is the discretized decoder
    p_mean: float = -1.2  # edm: mean of ln sigma~
    p_std: float = 1.2  # edm: standard deviation of ln sigma~
    integer_steps: bool = True  # a table's integer steps i / T (Algorithm 1); False: any t in [1/T, 1]
    name: ClassVar[str] = ""
    needs_table: ClassVar[bool] = False  # its loss sits on a discrete schedule's integer steps (the ELBO's terms)

    def times(self, u: Tensor) -> Tensor:
        """Training times from uniforms u (B,)."""
        return training_times(self.schedule, u, self.integer_steps)

    def loss(self, net: nn.Module, batch: Batch, noise: NoiseSource) -> Tensor:
        x0 = batch.x
        t = self.times(noise.rand()).to(x0.device)  # float64 (B,)
        eps = noise.randn(x0.shape[1:]).to(x0.device)  # Algorithm 1, line 4
        cond = batch.cond
        if cond is not None and self.cond_dropout > 0:
            cond = cond.drop(noise.rand() < self.cond_dropout)  # one network, conditional and unconditional
        precond = Precond(net, self.schedule, self.param, self.learn_variance)
        pred = precond(self.schedule.q_sample(x0, t, eps), t, cond)  # diffusion kernel q(x_t | x_0)
        return self.weigh(pred, x0, t, output_error(precond, pred, x0, eps, t))  # |F - F*|^2

    def weigh(self, pred: Prediction, x0: Tensor, t: Tensor, err: Tensor) -> Tensor:
        """(B,) loss from the prediction and the output error err = |F - F*|^2 (B,)."""
        raise NotImplementedError


OBJECTIVES: dict[str, type[DiffusionObjective]] = {}  # train.objective -> its class


def register_objective(cls: type[DiffusionObjective]) -> type[DiffusionObjective]:
    """Class decorator: make a diffusion objective selectable as train.objective = cls.name."""
    OBJECTIVES[cls.name] = cls
    return cls


@register_objective
class Simple(DiffusionObjective):
    """w(s) |F - F*|^2: Algorithm 1 (t uniform over the table, or U[t_min, 1] for an SDE)."""

    name = "simple"

    def weigh(self, pred: Prediction, x0: Tensor, t: Tensor, err: Tensor) -> Tensor:
        return self.param.loss_weight(sigma_tilde(self.schedule, t)).to(err) * err


@register_objective
class ELBO(DiffusionObjective):
    """The bound's own term L_{t-1} (L_0 at t = 1) per dimension: T E_t[loss] is the negative ELBO."""

    name = "elbo"
    needs_table = True

    def __post_init__(self) -> None:
        if self.schedule.steps is None:
            raise UserError(f"train.objective={self.name} needs a discrete schedule (linear or cosine): the ELBO is "
                            "a sum over steps")

    def bound(self, pred: Prediction, x0: Tensor, t: Tensor) -> Tensor:
        steps = (t * self.schedule.steps).round().long()  # the ELBO's integer steps
        return term_from_prediction(pred, self.schedule, x0, steps, variance="learned" if self.learn_variance
                                    else "posterior", discrete=self.quantized).float() / x0[0].numel()

    def weigh(self, pred: Prediction, x0: Tensor, t: Tensor, err: Tensor) -> Tensor:
        return self.bound(pred, x0, t)


@register_objective
class Hybrid(ELBO):
    """simple + hybrid_weight * elbo; with a learned variance the bound trains only the variance (improved DDPM)."""

    name = "hybrid"

    def weigh(self, pred: Prediction, x0: Tensor, t: Tensor, err: Tensor) -> Tensor:
        simple = Simple.weigh(self, pred, x0, t, err)
        if self.learn_variance:
            pred = replace(pred, x0=pred.x0.detach(), eps=pred.eps.detach())  # the bound trains the variance only
        return simple + self.hybrid_weight * self.bound(pred, x0, t)


@register_objective
class EDMLoss(DiffusionObjective):
    """lambda(s) |x0_hat - x0|^2, lambda = (s^2 + sd^2) / (s sd)^2, ln s ~ N(P_mean, P_std^2) (EDM sec. 5)."""

    name = "edm"

    def times(self, u: Tensor) -> Tensor:
        return log_normal_times(self.schedule, u, self.p_mean, self.p_std)

    def weigh(self, pred: Prediction, x0: Tensor, t: Tensor, err: Tensor) -> Tensor:
        s, sd2 = sigma_tilde(self.schedule, t), self.param.sigma_data ** 2  # lambda |x0_hat - x0|^2 = lambda c_out^2 |F - F*|^2
        return ((s**2 + sd2) / (s**2 * sd2) * self.param.coefficients(s)[1] ** 2).to(err) * err
