"""diffusers' samplers ("schedulers") on an exact noise-prediction model, for benchmarks at equal NFE.

diffusers is optional (the bench extras); it is imported inside `sample_with_peer` only. Each peer is the diffusers
class with its DEFAULT settings except the variant its name says (karras = use_karras_sigmas=True, 3m =
solver_order=3), built on our betas (`trained_betas`, `num_train_timesteps=len(betas)`) and run the way diffusers'
pipelines run it: x = x_T * init_noise_sigma; for t in timesteps: model(scale_model_input(x, t)); x = step(...).

What the model is told (alpha_bar of the VP input x_t = sqrt(ab) x0 + sqrt(1 - ab) eps it receives):
  * ddim, ddpm, pndm index `alphas_cumprod` by the integer timestep: ab = alphas_cumprod[t] (ours, float64).
  * every other peer keeps a sigma table and converts the model output with `sigmas[step_index]` (the VE sigma
    sqrt((1 - ab) / ab)), so the model gets ab = 1 / (1 + sigma^2) at that sigma: on integer timesteps this is
    alphas_cumprod[t] to float32 precision. With karras sigmas (dpmpp_*_karras, unipc_karras) the timestep handed to a
    network is rounded, but the solver's algebra uses the unrounded karras sigma, and so do we; euler, heun and kdpm2
    hand over fractional timesteps whose sigma is interpolated linearly in t. KDPM2's second stage uses
    `sigmas_interpol`, as its scale_model_input does.
Sigma-based peers (euler*, heun, kdpm2) start at init_noise_sigma = sigma_max and divide by sqrt(sigma^2 + 1) in
scale_model_input, which turns their VE state into exactly this VP x_t.

Defaults worth knowing: ddim and ddpm would clip the predicted x0 to [-1, 1] (clip_sample=True, an image-range
setting, turned off here as a user of non-image data would), and they use "leading" timesteps
(n = 50 starts at t = 980, not 999); deis and pndm end at the noise level of timestep 0 (sigma ~ 0.01 for linear
betas), not at sigma = 0; the non-karras multistep peers space their timesteps uniformly in t, so their last steps keep
a fixed log-SNR length and their error does not shrink like h^p as NFE grows (the karras variants do). dpmpp_3m is
effectively second order: diffusers' third-order term (as in k-diffusion and the DPM-Solver reference code) weights
D2 by half the Taylor coefficient; on an exact model and a karras grid its error falls like NFE^-1.9 (NFE^-3.0 with
that weight doubled).
Precision: diffusers keeps betas, alphas_cumprod and sigmas in float32, and the DPMSolverMultistep (dpmpp_2m*, 3m*),
Euler and EulerAncestral steps cast the state to float32 inside step(); the returned samples are float64 (rounding
~1e-7 relative, far below any sampler error at NFE >= 5).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from difflab.errors import UserError

INSTALL = "install the bench extras: .venv/bin/pip install -c bench/constraints.txt -r bench/requirements.txt"


@dataclass(frozen=True)
class _Peer:
    """One diffusers scheduler configuration and how its steps translate into model calls."""

    cls: str  # diffusers class name
    cost: str  # "step": 1 call per step; "two_stage": 2 n - 1 calls; "prk_warmup": n + 9 calls
    stochastic: bool = False
    sigma_table: bool = True  # False: the model's noise level is alphas_cumprod[timestep]
    spare: int = 0  # 1 where set_timesteps rounds linspace(0, T - 1, n + 1): n <= T - 1 keeps the timesteps distinct
    options: dict[str, Any] = field(default_factory=dict)  # the only non-default settings


_PEERS: dict[str, _Peer] = {
    "ddim": _Peer("DDIMScheduler", "step", sigma_table=False, options={"clip_sample": False}),  # eta = 0
    "ddpm": _Peer("DDPMScheduler", "step", stochastic=True, sigma_table=False, options={"clip_sample": False}),
    "euler": _Peer("EulerDiscreteScheduler", "step"),
    "euler_ancestral": _Peer("EulerAncestralDiscreteScheduler", "step", stochastic=True),
    "heun": _Peer("HeunDiscreteScheduler", "two_stage"),
    "kdpm2": _Peer("KDPM2DiscreteScheduler", "two_stage"),
    "dpmpp_2m": _Peer("DPMSolverMultistepScheduler", "step", spare=1),
    "dpmpp_2m_karras": _Peer("DPMSolverMultistepScheduler", "step", options={"use_karras_sigmas": True}),
    "dpmpp_3m": _Peer("DPMSolverMultistepScheduler", "step", spare=1, options={"solver_order": 3}),
    "dpmpp_3m_karras": _Peer("DPMSolverMultistepScheduler", "step",
                             options={"solver_order": 3, "use_karras_sigmas": True}),
    "dpmpp_2s": _Peer("DPMSolverSinglestepScheduler", "step", spare=1,  # solver_order = 2 is its default;
                      options={"lower_order_final": True}),  # what set_timesteps switches to anyway, with a warning
    "unipc": _Peer("UniPCMultistepScheduler", "step", spare=1),
    "unipc_karras": _Peer("UniPCMultistepScheduler", "step", options={"use_karras_sigmas": True}),
    "deis": _Peer("DEISMultistepScheduler", "step", spare=1),
    "pndm": _Peer("PNDMScheduler", "prk_warmup", sigma_table=False),
}
# LMSDiscreteScheduler is left out: its step integrates its coefficients with scipy, which the bench extras lack.

PEER_SAMPLERS: tuple[str, ...] = tuple(_PEERS)
NOISE_SEED_OFFSET = 0x9E3779B9  # step noise seed = (seed + this) mod 2^32 (torch's CPU generator keeps 32 bits):
# far from the small seeds x_T is usually drawn with, so the step noise never replays x_T
PRK_CALLS = 12  # pndm's warm-up: 3 Runge-Kutta steps of 4 calls each replace 3 of its linear multistep steps


def _peer(name: str) -> _Peer:
    """The registry entry for `name`, or a UserError listing the choices."""
    if name not in _PEERS:
        raise UserError(f"unknown peer sampler {name!r}; choose one of {', '.join(PEER_SAMPLERS)}")
    return _PEERS[name]


def peer_is_stochastic(name: str) -> bool:
    """True when the peer draws fresh noise in its steps (ddpm, euler_ancestral); eta = 0 / ODE otherwise."""
    return _peer(name).stochastic


def peer_steps_for_nfe(name: str, nfe: int) -> int | None:
    """num_inference_steps n that costs exactly `nfe` model calls, or None when no n does.

    One call per step (nfe = n): ddim, ddpm, euler, euler_ancestral, dpmpp_2m(_karras), dpmpp_3m(_karras), dpmpp_2s
    (its singlestep stages are themselves entries of `timesteps`), unipc(_karras) (the corrector reuses the next
    step's call), deis. Heun and KDPM2 (nfe = 2 n - 1): two calls per step except the last, a plain Euler step to
    sigma = 0, so nfe must be odd. PNDM (nfe = n + 9, n >= 4): 12 Runge-Kutta calls stand in for its first 3 steps.
    `sample_with_peer` checks the upper limit: n <= T, or n <= T - 1 for dpmpp_2m, dpmpp_3m, dpmpp_2s, unipc and deis,
    whose rounded timesteps would repeat (and divide by a zero log-SNR step) at n = T.
    """
    cost = _peer(name).cost
    if nfe < 1:
        return None
    if cost == "step":
        return nfe
    if cost == "two_stage":
        return (nfe + 1) // 2 if nfe % 2 == 1 else None
    return nfe - (PRK_CALLS - 3) if nfe >= PRK_CALLS + 1 else None  # prk_warmup


def _reachable_steps(name: str, nfe: int) -> int:
    """Steps for the largest reachable call count <= nfe; a UserError when there is none."""
    for calls in range(nfe, 0, -1):
        steps = peer_steps_for_nfe(name, calls)
        if steps is not None:
            return steps
    raise UserError(f"peer sampler {name!r} cannot run on nfe={nfe} model calls (pndm needs 13, the others 1)")


def _check_inputs(name: str, steps: int, betas: Tensor, x_T: Tensor) -> None:
    """One clear line for inputs the schedulers would choke on."""
    if betas.ndim != 1 or x_T.ndim != 2:
        shapes = f"{tuple(betas.shape)} and {tuple(x_T.shape)}"
        raise UserError(f"need betas of shape (T,) and x_T of shape (B, D), got {shapes}")
    most = len(betas) - _PEERS[name].spare
    if steps > most:
        raise UserError(f"peer sampler {name!r} takes at most {most} steps with T={len(betas)}, asked for {steps}")


def require_diffusers() -> None:
    """Fail early, in one line, when diffusers is missing."""
    _diffusers()


def _diffusers() -> Any:
    """The diffusers module, or a UserError saying how to install it."""
    try:
        import diffusers
    except ImportError:
        raise UserError(f"the peer samplers need diffusers, which is not installed; {INSTALL}") from None
    return diffusers


def _scheduler(peer: _Peer, betas: Tensor) -> Any:
    """The diffusers scheduler on our betas, otherwise with its class defaults (plus the peer's variant)."""
    cls = getattr(_diffusers(), peer.cls)
    return cls(num_train_timesteps=len(betas), trained_betas=betas.tolist(), **peer.options)


def _current_sigma(scheduler: Any) -> float:
    """The VE sigma the scheduler converts the coming model output with (before the first step: index 0)."""
    i = 0 if scheduler.step_index is None else int(scheduler.step_index)
    if hasattr(scheduler, "sigmas_interpol") and not scheduler.state_in_first_order:  # KDPM2's midpoint stage
        return float(scheduler.sigmas_interpol[i])
    return float(scheduler.sigmas[i])


def _alpha_bar(peer: _Peer, scheduler: Any, t: Tensor, alphas_cumprod: Tensor) -> float:
    """alpha_bar of the VP x_t that scale_model_input hands the model at timestep t (module docstring)."""
    if not peer.sigma_table:
        return float(alphas_cumprod[int(t)])
    return 1.0 / (1.0 + _current_sigma(scheduler) ** 2)


@torch.no_grad()
def sample_with_peer(
    name: str,
    nfe: int,
    eps_model: Callable[[Tensor, Tensor], Tensor],
    betas: Tensor,
    x_T: Tensor,
    seed: int = 0,
) -> tuple[Tensor, int]:
    """Run diffusers scheduler `name` for the number of steps that costs `nfe` model calls; return (x_0 samples, model calls actually made).

    eps_model(x_t, alpha_bar) gets the VP x_t (B, D) float64 and alpha_bar (B,) float64 and returns E[eps | x_t].
    betas: (T,) beta_1..beta_T; x_T: (B, D) standard normal. When `nfe` is not reachable exactly (heun/kdpm2 even,
    see `peer_steps_for_nfe`) the largest reachable count below it is spent and returned. Stochastic peers draw their
    step noise from one generator seeded with (seed + NOISE_SEED_OFFSET) mod 2^32: with plain `seed`, an x_T drawn with
    the same seed would come back as the first step's noise (correlated, not fresh: on a point mass, std x 1.4).
    """
    peer = _peer(name)
    steps = _reachable_steps(name, nfe)
    _check_inputs(name, steps, betas, x_T)
    scheduler = _scheduler(peer, betas)
    scheduler.set_timesteps(steps)
    alphas_cumprod = torch.cumprod(1.0 - betas.double(), dim=0)  # (T,) alphas_cumprod[k] = prod_{i<=k} (1 - beta_i)
    gen = torch.Generator().manual_seed((seed + NOISE_SEED_OFFSET) % 2**32)  # one stream for all steps, as pipelines
    extra = {"generator": gen} if peer.stochastic else {}
    x = x_T.double() * scheduler.init_noise_sigma  # (B, D)
    calls = 0
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)  # the VP x_t
        ab = torch.full((len(x),), _alpha_bar(peer, scheduler, t, alphas_cumprod), dtype=torch.float64)
        eps = eps_model(x_in, ab)
        calls += 1
        x = scheduler.step(eps, t, x, **extra).prev_sample
    return x.double(), calls
