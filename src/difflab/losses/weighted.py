"""The lecture's three weighted forms of L_{t-1} (Interpretations 1-3): the same KL, written for x0, eps or score.

With the reverse variance fixed to the posterior's sigma_t^2, for t >= 2:
  L_{t-1} = 1/(2 sigma_t^2) * ab_{t-1} (1 - a_t)^2 / (1 - ab_t)^2 * |x0_hat - x0|^2          (x0-prediction)
          = 1/(2 sigma_t^2) * (1 - a_t)^2 / ((1 - ab_t) a_t)     * |eps_hat - eps|^2        (eps-prediction)
          = 1/(2 sigma_t^2) * (1 - a_t)^2 / a_t                  * |s_hat - grad log q(x_t|x_0)|^2  (score)
"""
from __future__ import annotations

from torch import Tensor

from difflab.errors import UserError
from difflab.prediction import Prediction
from difflab.schedules.discrete import DiscreteSchedule

SEED_FORMS = ("x0", "eps", "score")


def seed_weight(schedule: DiscreteSchedule, t: Tensor, parameterization: str) -> Tensor:
    """(B,) float64 weight of |target_hat - target|^2 in L_{t-1}, integer steps t >= 2."""
    a, ab, ab_prev = schedule.alphas[t], schedule.alpha_bars[t], schedule.alpha_bars[t - 1]
    inv2s2 = 1 / (2 * schedule.posterior_variance(t))
    if parameterization == "x0":
        return inv2s2 * ab_prev * (1 - a) ** 2 / (1 - ab) ** 2
    if parameterization == "eps":
        return inv2s2 * (1 - a) ** 2 / ((1 - ab) * a)
    if parameterization == "score":
        return inv2s2 * (1 - a) ** 2 / a
    raise UserError(f"the lecture's weighted objectives are for {SEED_FORMS}, got {parameterization!r}")


def weighted_kl(pred: Prediction, truth: Prediction, schedule: DiscreteSchedule, t: Tensor, parameterization: str) -> Tensor:
    """(B,) L_{t-1} from the prediction's error in one parameterization; `truth` holds the real x0 and eps."""
    w = seed_weight(schedule, t.cpu(), parameterization).to(pred.x_t.device)
    err = (pred.target(parameterization) - truth.target(parameterization)).double() ** 2
    return w * err.flatten(1).sum(1)
