"""A noise-conditional classifier p(y | x_t, t) trained on noised data (seed: 'Conditional sampling'): the cross
entropy at x_t ~ q(x_t | x_0), t drawn like the diffusion model's, input preconditioned like a denoiser's."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F

from difflab.condition import LABEL
from difflab.losses.objective import Batch, training_times
from difflab.noise import NoiseSource
from difflab.precond import Parameterization, c_noise, sigma_tilde
from difflab.schedules.base import Schedule
from difflab.utils import bcast


def classifier_logits(net: nn.Module, schedule: Schedule, x_t: Tensor, t: Tensor) -> Tensor:
    """(B, classes) logits of p(y | x_t, t): the network sees c_in(sigma~) x_t / alpha and c_noise(sigma~)."""
    s = sigma_tilde(schedule, t)
    y = x_t / bcast(schedule.alpha(t), x_t)
    return net(y * bcast(Parameterization().c_in(s), x_t), c_noise(s))


@dataclass(frozen=True)
class ClassifierObjective:
    """-log p(y | x_t, t) per example, t uniform over the table (or U[t_min, 1])."""

    schedule: Schedule
    conditions: tuple[str, ...] = (LABEL,)

    def loss(self, net: nn.Module, batch: Batch, noise: NoiseSource) -> Tensor:
        x0 = batch.x
        t = training_times(self.schedule, noise.rand(), integer_steps=True).to(x0.device)
        x_t = self.schedule.q_sample(x0, t, noise.randn(x0.shape[1:]).to(x0.device))
        return F.cross_entropy(classifier_logits(net, self.schedule, x_t, t).float(), batch.cond[LABEL],
                               reduction="none")
