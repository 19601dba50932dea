"""Posterior sampling for y = A x + n with any trained model, through the model contract: a step hook (projection onto
the measurements), a denoiser transform (diffusion posterior sampling) and a start from (x, t0) (SDEdit), so each
works with every sampler it is defined for.

Projection (Song et al. 2021, 'controllable generation'; RePaint's replacement): after every step to time s,
    x_s <- x_s + A^+ (y_s - A x_s),   y_s = alpha_s y + sigma_s A z     (the measurement noised to level s),
and at s = 0 with y itself; it needs A^+ (inpainting, super-resolution, MRI). RePaint's resampling (Lugmayr et al.
2022) repeats each interval r times, renoising x_s back to t in between, so the unmeasured part catches up with the
projected one: `resampled(sampler, r)` wraps any sampler that can start from (x, t).

Diffusion posterior sampling (Chung et al. 2023): the likelihood through the denoised x0,
    grad log p(y | x_t) ~ -zeta grad_{x_t} ||y - A x0_hat(x_t)||^2 / (2 rho_t^2),   rho_t^2 = sigma_y^2 + r_t^2 ||A||^2,
r_t^2 = sigma~^2 / (1 + sigma~^2) the variance of x0 given x_t for unit-variance data (Song et al. 2023, PiGDM),
with A A^T taken as ||A||^2 I (exact for inpainting and MRI, whose rows are orthonormal).
**Step size convention: zeta = 1 is this Gaussian approximation of p(y | x_t)**; zeta > 1 pulls harder towards the
measurements. The gradient passes through the network (autograd inside the transform only).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from difflab.condition import MEASUREMENT, Condition
from difflab.errors import UserError
from difflab.operators import Operator
from difflab.noise import NoiseSource
from difflab.precond import sigma_tilde
from difflab.prediction import Denoiser, Prediction, scales
from difflab.schedules.base import Schedule


def measured(cond: Optional[Condition], fixed: Optional[Tensor]) -> tuple[Tensor, Optional[Condition]]:
    """(y, the rest of the condition): a transform's fixed y, else the rows' measurement field."""
    if fixed is not None:
        return fixed, cond
    if cond is None or MEASUREMENT not in cond.fields:
        raise UserError(f"this transform reads the measurement from the condition's {MEASUREMENT!r} field, which this "
                        "call lacks: pass y, or a condition that carries it")
    return cond[MEASUREMENT], cond.without(MEASUREMENT)


class Projection:
    """Step hook: replace the measured part of x_s by the measurement noised to level s (exact at s = 0)."""

    def __init__(self, op: Operator, y: Tensor, schedule: Schedule, noise: NoiseSource):
        if not op.has_pinv:
            raise UserError(f"projection needs the operator's pseudo-inverse, which {op.name} does not have: use "
                            "--method dds or dps")
        self.op, self.y, self.schedule, self.noise = op, op.check_measurement(y), schedule, noise

    def __call__(self, step: int, s: Tensor, x: Tensor) -> Tensor:
        y = self.y.to(x.device)
        if float(s) > 0:
            alpha, sigma = (v.reshape(-1, *[1] * (y.ndim - 1)) for v in scales(self.schedule, s, x))
            y = alpha * y + sigma * self.op.forward(self.noise.randn(self.op.shape).to(x.device))
        return x + self.op.pinv(y - self.op.forward(x))


class MeasuredProjection:
    """The projection as a RowHook: bound to a batch, it projects each row onto that row's measurement (the
    condition's measurement field), noised from the row's own stream (seed, sample index)."""

    def __init__(self, op: Operator, schedule: Schedule, seed: int):
        if not op.has_pinv:
            raise UserError(f"projection needs the operator's pseudo-inverse, which {op.name} does not have: use "
                            "--method dds or dps")
        self.op, self.schedule, self.seed = op, schedule, seed

    def bind(self, cond: Optional[Condition], rows: Tensor) -> Projection:
        y, _ = measured(cond, None)
        return Projection(self.op, y, self.schedule, NoiseSource.for_indices(self.seed, rows.tolist()))


def x0_variance(schedule: Schedule, t: Tensor) -> float:
    """r_t^2 = sigma~^2 / (1 + sigma~^2): Var[x0 | x_t] per pixel for unit-variance Gaussian data (PiGDM), at the
    batch's shared time t."""
    st = sigma_tilde(schedule, torch.as_tensor(t, dtype=torch.float64).reshape(-1)[:1])
    return float(st**2 / (1 + st**2))


class DPS:
    """Denoiser transform: score + zeta grad_{x_t} log N(y; A x0_hat(x_t), rho_t^2 I), rho_t^2 = sigma_y^2 +
    r_t^2 ||A||^2."""

    def __init__(self, denoiser: Denoiser, op: Operator, y: Optional[Tensor], schedule: Schedule, zeta: float = 1.0):
        if not (math.isfinite(zeta) and zeta >= 0):
            raise UserError(f"the DPS step size zeta must be a finite number >= 0, got {zeta}")
        self.denoiser, self.op, self.schedule, self.zeta = denoiser, op, schedule, zeta
        self.y = op.check_measurement(y) if y is not None else None  # None: each call's measurement field

    def __call__(self, x_t: Tensor, t: Tensor, cond: Optional[Condition] = None) -> Prediction:
        y, cond = measured(cond, self.y)
        y = y.to(x_t.device)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            pred = self.denoiser(x, t, cond)
            # Var[y | x_t] under the Gaussian approximation, A A^T taken as ||A||^2 I
            rho2 = self.op.noise_std**2 + x0_variance(self.schedule, t) * self.op.norm() ** 2
            resid = (y - self.op.forward(pred.x0)).abs().square().flatten(1).sum(1)  # ||y - A x0_hat||^2 per row
            (g,) = torch.autograd.grad(resid.sum(), x)
        score = pred.score.detach() - self.zeta * g / (2 * rho2)
        guided = Prediction.from_score(x_t, pred.alpha, pred.sigma, score)
        return Prediction(guided.x_t, guided.alpha, guided.sigma, guided.x0, guided.eps, pred.var_frac)


Sampler = Callable[..., Tensor]


def resampled(sampler: Sampler, jumps: int, schedule: Schedule) -> Sampler:
    """RePaint: walk the grid one interval at a time with `sampler`, doing each interval `jumps` times, renoising x_s
    to t in between: x_t = (alpha_t / alpha_s) x_s + sqrt(sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2) z."""
    if jumps < 1:
        raise UserError(f"resampling needs jumps >= 1, got {jumps}")

    def run(denoiser: Denoiser, x: Tensor, schedule_: Schedule, grid: Tensor, *, noise: NoiseSource, **kw) -> Tensor:
        for i in range(len(grid) - 1):
            t, s = grid[i], grid[i + 1]
            for j in range(jumps):
                x_s = sampler(denoiser, x, schedule_, torch.stack([t, s]), noise=noise, **kw)
                if j == jumps - 1 or float(s) == 0:
                    break
                a = float(schedule.alpha(t) / schedule.alpha(s))
                var = float(schedule.sigma(t) ** 2) - a**2 * float(schedule.sigma(s) ** 2)
                x = a * x_s + math.sqrt(max(var, 0.0)) * noise.randn_like(x_s)
            x = x_s
        return x

    return run


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Real inner product per row: Re sum conj(a) b, (B,)."""
    return (a.conj() * b).real.flatten(1).sum(1) if a.is_complex() else (a * b).flatten(1).sum(1)


def conjugate_gradients(apply: Callable[[Tensor], Tensor], b: Tensor, x: Optional[Tensor], iters: int,
                        floor: float = 1e-6) -> Tensor:
    """`iters` conjugate-gradient steps on apply(x) = b from x (None: from 0), row by row (each row of the batch its
    own system).
    A row stops at the first non-positive curvature p^T M p (a network's Jacobian is only nearly symmetric positive)
    or a converged residual, keeping the iterate it has."""
    x, res = (torch.zeros_like(b), b.clone()) if x is None else (x, b - apply(x))
    p, rr = res.clone(), _dot(res, res)
    live = torch.ones(len(b), dtype=torch.bool, device=b.device)
    shape = (-1,) + (1,) * (b.ndim - 1)
    for _ in range(iters):
        mp = apply(p)
        curv = _dot(p, mp)
        live = live & torch.isfinite(curv) & (curv > floor * rr.clamp_min(1e-30))
        step = torch.where(live, rr / curv.clamp_min(1e-30), torch.zeros_like(rr))
        x = x + step.reshape(shape) * p
        res = res - step.reshape(shape) * torch.nan_to_num(mp)
        rr_new = _dot(res, res)
        p = res + torch.where(live, rr_new / rr.clamp_min(1e-30), torch.zeros_like(rr)).reshape(shape) * p
        rr = rr_new
    return x


class DataConsistency:
    """Denoiser transform (decomposed diffusion sampling, Chung et al. 2024): the denoised x0_hat moved towards the
    measurements by `iters` conjugate-gradient steps, started at x0_hat, on the proximal problem
        min_x  zeta ||y - A x||^2 / (2 sigma_y^2) + ||x - x0_hat||^2 / (2 r_t^2),
    i.e. (A^T A + gamma_t I) x = A^T y + gamma_t x0_hat with gamma_t = sigma_y^2 / (zeta r_t^2), r_t^2 = sigma~^2 /
    (1 + sigma~^2) as in DPS (zeta = 1: the Gaussian approximation of p(x0 | x_t); larger zeta trusts y more). With
    noiseless measurements gamma_t = 0: the normal equations A^T A x = A^T y, where the Krylov subspace around x0_hat
    is the regularizer (few steps: close to x0_hat; many: A^+ y on the measured part). With noisy ones gamma_t keeps
    the late, nearly clean steps from fitting the noise. x0 enters the sampler's update in place of x0_hat, eps
    follows from x_t. Needs only A and A^T (CT included) and no network gradient: one network evaluation per call."""

    def __init__(self, denoiser: Denoiser, op: Operator, y: Optional[Tensor], schedule: Schedule, iters: int = 10,
                 zeta: float = 1.0):
        if not (isinstance(iters, int) and iters >= 1):
            raise UserError(f"data consistency needs a whole number of conjugate-gradient steps >= 1, got {iters}")
        if not (zeta > 0):
            raise UserError(f"the data-consistency weight zeta must be > 0 (inf: no proximal term), got {zeta}")
        self.denoiser, self.op, self.schedule = denoiser, op, schedule
        self.y = op.check_measurement(y) if y is not None else None  # None: each call's measurement field
        self.iters, self.zeta = iters, zeta

    def __call__(self, x_t: Tensor, t: Tensor, cond: Optional[Condition] = None) -> Prediction:
        y, cond = measured(cond, self.y)
        pred = self.denoiser(x_t, t, cond)
        y, op, x0_hat = y.to(x_t.device), self.op, pred.x0.detach()
        r2 = x0_variance(self.schedule, t)
        gamma = op.noise_std**2 / (self.zeta * r2) if op.noise_std > 0 and r2 > 0 else 0.0
        x0 = conjugate_gradients(lambda v: op.adjoint(op.forward(v)) + gamma * v, op.adjoint(y) + gamma * x0_hat,
                                 x0_hat, self.iters)
        moved = Prediction.from_x0(x_t, pred.alpha, pred.sigma, x0)
        return Prediction(moved.x_t, moved.alpha, moved.sigma, moved.x0, moved.eps, pred.var_frac)


class MomentProjection:
    """Denoiser transform: score + grad log p(y | x_t) with p(x_0 | x_t) replaced by the Gaussian of its first two
    moments (Boys et al. 2023, 'Tweedie moment projected diffusions'):
        p(y | x_t) = N(y; A x0_hat, A C_t A^T + sigma_y^2 I),   C_t = Cov[x_0 | x_t] = (sigma^2 / alpha) d x0_hat / d x_t
    (Tweedie's second-order formula), so grad log p(y | x_t) = J^T A^T u with (A C_t A^T + sigma_y^2 I) u = y - A x0_hat
    solved by conjugate gradients on Jacobian-vector products (`iters` of them, ~3 network evaluations each). Exact for
    Gaussian data, where p(x_0 | x_t) is Gaussian: the test against the exact posterior (tests/test_posterior.py)."""

    def __init__(self, denoiser: Denoiser, op: Operator, y: Optional[Tensor], iters: int = 8, floor: float = 1e-6):
        self.denoiser, self.op, self.iters, self.floor = denoiser, op, iters, floor
        self.y = op.check_measurement(y) if y is not None else None  # None: each call's measurement field

    def __call__(self, x_t: Tensor, t: Tensor, cond: Optional[Condition] = None) -> Prediction:
        y, cond = measured(cond, self.y)
        y = y.to(x_t.device)
        # the math attention kernel: the fused ones have no second derivative, which the Jacobian-vector products need
        with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
            x = x_t.detach().requires_grad_(True)
            pred = self.denoiser(x, t, cond)
            x0 = pred.x0
            c = (pred.sigma**2 / pred.alpha).detach()  # (B, 1, ...): C_t = c J

            def jvp(v: Tensor) -> Tensor:  # J v by the double-backward trick: d/dw <J^T w, v>
                w = torch.zeros_like(x0, requires_grad=True)
                (jt,) = torch.autograd.grad(x0, x, w, create_graph=True)
                (jv,) = torch.autograd.grad(jt, w, v, retain_graph=True)
                return jv

            def gamma(u: Tensor) -> Tensor:  # (A C_t A^T + sigma_y^2 I) u
                return self.op.forward(c * jvp(self.op.adjoint(u))) + self.op.noise_std**2 * u

            r = y - self.op.forward(x0.detach())
            u = conjugate_gradients(gamma, r, None, self.iters, self.floor)
            (g,) = torch.autograd.grad(x0, x, self.op.adjoint(u.detach()))  # J^T A^T u
        score = pred.score.detach() + g
        guided = Prediction.from_score(x_t, pred.alpha, pred.sigma, score)
        return Prediction(guided.x_t, guided.alpha, guided.sigma, guided.x0, guided.eps, pred.var_frac)
