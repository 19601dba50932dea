"""Preconditioning (Karras et al. 2022, sec. 5 and table 1): a network sees only the noise level, never a schedule.

With sigma~ = sigma / alpha and y = x_t / alpha = x_0 + sigma~ eps (the VE view of any schedule), the network is
called as F = net(c_in(sigma~) y, c_noise(sigma~), cond) and its output becomes the denoised image
  x0_hat = c_skip(sigma~) y + c_out(sigma~) F                                        (EDM, eq. 7)
with c_in = 1 / sqrt(sigma~^2 + sigma_data^2) and c_noise = t_VP(sigma~), the time at which the VP SDE (beta 0.1 -> 20,
the DDPM linear table in continuous time) has this noise level: EDM table 1's choice for VP (M t). A network therefore
depends only on the log-SNR: trained under the linear table it runs on the cosine table's or the VP SDE's grid.
For a VP schedule with sigma_data = 1, c_in y = x_t: the eps, x0, v and score networks see exactly x_t.

Per parameterization (c_skip, c_out), sigma_data = 1 except for edm:
  eps    1,                       -sigma~                        F = eps
  x0     0,                       1                              F = x0
  v      1 / (1 + sigma~^2),      -sigma~ / sqrt(1 + sigma~^2)   F = v of the VP view (Salimans & Ho 2022)
  score  1,                       sigma~^2 / sqrt(1 + sigma~^2)  F = score of the VP view, -eps / sigma_vp
  edm    sd^2 / (sigma~^2 + sd^2), sigma~ sd / sqrt(sigma~^2 + sd^2)   (EDM's F, sd = sigma_data)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from difflab.condition import Condition
from difflab.errors import UserError
from difflab.nn.embedding import NOISE_SCALE
from difflab.prediction import Prediction
from difflab.schedules.base import Schedule
from difflab.schedules.continuous import VPLinear
from difflab.utils import bcast

PARAMETERIZATIONS = ("eps", "x0", "v", "score", "edm")
_VP = VPLinear()  # the reference for c_noise


def sigma_tilde(schedule: Schedule, t: Tensor) -> Tensor:
    """sigma~(t) = sigma / alpha = exp(-lambda / 2), the noise level of y = x / alpha (float64)."""
    return torch.exp(-0.5 * schedule.log_snr(t))


def c_noise(s: Tensor) -> Tensor:
    """The noise level the network sees: t_VP(sigma~) = the VP SDE's time of log-SNR -2 ln sigma~ (EDM table 1, VP;
    beyond 1 above the VP SDE's largest noise), float64 (B,). Measured against ln(sigma~) / 4 (EDM's own) on the MNIST
    demo: the VP time spends the embedding's resolution where a DDPM-style model needs it (docs/benchmarks.md)."""
    return _VP.t_of_log_snr(-2 * torch.log(s))


NOISE_INPUTS = ("vp_time", "steps")  # train.noise_input: what c_noise is (see noise_input_fn)


def steps_input(schedule: Schedule) -> Callable[[Tensor], Tensor]:
    """c_noise(sigma~) = (i - 1) / 1000 with i = T t(sigma~) the table's (fractional) step of this noise level: the
    network's sinusoidal embedding (x 1000) sees i - 1, diffusers' integer timestep (its alphas_cumprod[i - 1] is the
    table's alpha_bar_i)."""
    if schedule.steps is None:
        raise UserError("train.noise_input=steps needs a discrete schedule (a beta table): its step index is the input")
    return lambda s: (schedule.t_of_log_snr(-2 * torch.log(s)) * schedule.steps - 1) / NOISE_SCALE


def noise_input_fn(name: str, schedule: Schedule) -> Callable[[Tensor], Tensor]:
    """sigma~ (B,) float64 -> the network's noise input: vp_time (c_noise, EDM's VP choice: difflab's own networks)
    or steps (the training table's step index: networks trained by diffusers)."""
    return c_noise if name == "vp_time" else steps_input(schedule)


@dataclass(frozen=True)
class Parameterization:
    """What the network's output F is: x0_hat = c_skip y + c_out F, eps_hat = (y - x0_hat) / sigma~."""

    name: str = "eps"  # eps, x0, v, score or edm
    sigma_data: float = 0.5  # edm: the data's standard deviation (others use 1: c_in y = x_t on VP schedules)

    def __post_init__(self) -> None:
        if self.name not in PARAMETERIZATIONS:
            raise UserError(f"train.parameterization must be one of {PARAMETERIZATIONS}, got {self.name!r}")
        if not self.sigma_data > 0:
            raise UserError(f"train.sigma_data must be positive, got {self.sigma_data}")

    @property
    def sd(self) -> float:
        return self.sigma_data if self.name == "edm" else 1.0

    def c_in(self, s: Tensor) -> Tensor:
        return (s**2 + self.sd**2).rsqrt()

    def coefficients(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """(c_skip, c_out) at noise level s = sigma~ (float64)."""
        one, sd2 = torch.ones_like(s), self.sd**2
        return {"eps": lambda: (one, -s), "x0": lambda: (0 * s, one),
                "v": lambda: (1 / (1 + s**2), -s / torch.sqrt(1 + s**2)),
                "score": lambda: (one, s**2 / torch.sqrt(1 + s**2)),
                "edm": lambda: (sd2 / (s**2 + sd2), s * self.sd / torch.sqrt(s**2 + sd2))}[self.name]()

    def target_coefficients(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """(a, b) with the ideal output F* = a x0 + b eps, from y = x0 + sigma~ eps (float64, no cancellation)."""
        c_skip, c_out = self.coefficients(s)
        return (1 - c_skip) / c_out, -c_skip * s / c_out

    def loss_weight(self, s: Tensor) -> Tensor:
        """Weight of |F - F*|^2 in the simple loss: 1, except sigma_vp^2 for the score (the eps loss's scale)."""
        return s**2 / (1 + s**2) if self.name == "score" else torch.ones_like(s)


class Precond(nn.Module):
    """Adapter: a raw network net(c_in y, c_noise, cond) becomes a Denoiser (x_t, t, cond) -> Prediction.

    Noise levels stay float64 up to the network's input. With learn_variance the network returns twice the channels:
    the output F, then v in [-1, 1] that sets the reverse variance's interpolation fraction (v + 1) / 2 (improved DDPM).
    """

    def __init__(self, net: nn.Module, schedule: Schedule, parameterization: Parameterization = Parameterization(),
                 learn_variance: bool = False, noise_input: Callable[[Tensor], Tensor] = c_noise):
        super().__init__()
        self.net, self.schedule, self.param, self.learn_variance = net, schedule, parameterization, learn_variance
        self.noise_input = noise_input  # sigma~ -> the network's noise input (noise_input_fn)

    def inputs(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(alpha, sigma, sigma~) float64 (B,), y = x_t / alpha and the network input c_in y (dtype of x_t)."""
        t = torch.as_tensor(t, dtype=torch.float64, device=x_t.device).expand(x_t.shape[0])
        alpha, sigma = self.schedule.alpha(t), self.schedule.sigma(t)
        s = sigma / alpha
        y = x_t / bcast(alpha, x_t)
        return alpha, sigma, s, y, y * bcast(self.param.c_in(s), x_t)

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition | None = None) -> Prediction:
        alpha, sigma, s, y, net_in = self.inputs(x_t, t)
        out = self.net(net_in, self.noise_input(s), cond)
        var_frac = None
        if self.learn_variance:
            out, v = out.chunk(2, dim=1)  # (B, C, ...) each
            var_frac = (v + 1) / 2
        c_skip, c_out = self.param.coefficients(s)
        x0 = bcast(c_skip, y) * y + bcast(c_out, y) * out  # EDM eq. 7
        eps = bcast((1 - c_skip) / s, y) * y - bcast(c_out / s, y) * out  # (y - x0) / sigma~
        return Prediction(x_t, bcast(alpha, x_t), bcast(sigma, x_t), x0, eps, var_frac, out)

    def target(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """The output F* a perfect network would give for x_t = alpha x0 + sigma eps."""
        s = sigma_tilde(self.schedule, torch.as_tensor(t, dtype=torch.float64, device=x0.device))
        a, b = self.param.target_coefficients(s)
        return bcast(a, x0) * x0 + bcast(b, x0) * eps
