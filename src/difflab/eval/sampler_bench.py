"""Sampler accuracy against exact scores: Gaussian mixtures (2-D and 64-D), every sampler at a ladder of NFE.

Errors: sliced Wasserstein-2 to fresh true samples (with the noise floor of two true sets), mode-weight total
variation, the log-likelihood gap E_samples[log q] - E_q[log q], and, for deterministic samplers, the RMS distance to
the exact probability-flow image of the same x_T (adaptive RK45 at 1e-10 tolerances: no sampling noise).
E_q[log q] is estimated on those exact flow images, which are true samples of q paired with the sampler's own x_T,
so a deterministic sampler's gap carries no sampling noise; a stochastic one's carries about the floor reported
(the gap between two independent true sets of the same size).
The samplers of the diffusers package run side by side on the same exact model when it is installed.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from difflab.data.toy import GaussianMixture, eight_mode_ring
from difflab.eval.exact import MixtureDenoiser
from difflab.samplers import SAMPLERS, CountingDenoiser, NoiseSource
from difflab.samplers.calibrate import calibrate_grid, rms_distance
from difflab.schedules import DiscreteSchedule, cosine_betas, linear_betas
from difflab.schedules.grids import make_grid

NFES = (5, 10, 20, 50, 100, 1000)
TOLERANCES = (1e-2, 1e-3, 1e-4, 1e-5)  # RK45 is adaptive: one row per tolerance, at the NFE it spends
# (sampler, grid, options) for every difflab row
DIFFLAB_ROWS = (
    ("ancestral", "discrete", {}), ("ddim", "uniform", {}), ("euler_maruyama", "uniform", {}), ("pc", "uniform", {}),
    ("langevin", "karras", {}), ("heun", "uniform", {}), ("heun", "logsnr", {}), ("edm", "karras", {}), ("dpmpp_2m", "logsnr", {}),
    ("dpmpp_3m", "logsnr", {}), ("dpmpp_pc", "logsnr", {}), ("dpmpp_2m", "focus", {}), ("dpmpp_3m", "focus", {}),
    ("dpmpp_pc", "focus", {}), ("dpmpp_pc", "calibrated", {}),
)
CALIBRATED_NFES = (5, 10, 20)  # grid calibration is for the few-step regime (its cost grows with the steps)


def mixture_64d(seed: int = 0, K: int = 8) -> GaussianMixture:
    """A 64-D mixture with unequal weights 1..K, means of norm ~2, anisotropic covariances (std 0.1..0.4)."""
    g = torch.Generator().manual_seed(seed)
    D = 64
    means = torch.randn(K, D, generator=g, dtype=torch.float64) * (2 / math.sqrt(D))
    q, _ = torch.linalg.qr(torch.randn(K, D, D, generator=g, dtype=torch.float64))  # (K, D, D) rotations
    std = 0.1 + 0.3 * torch.rand(K, D, generator=g, dtype=torch.float64)
    covs = q @ torch.diag_embed(std**2) @ q.transpose(-1, -2)
    return GaussianMixture(torch.arange(1, K + 1, dtype=torch.float64), means, covs)


MIXTURES: dict[str, Callable[[], GaussianMixture]] = {"2d": eight_mode_ring, "64d": mixture_64d}
SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


@dataclass(frozen=True)
class BenchConfig:
    """What to run."""

    nfes: tuple[int, ...] = NFES  # network evaluations per sample
    samples: tuple[int, int] = (4000, 1000)  # samples for the 2-D and the 64-D mixture
    slices: int = 256  # random directions of the sliced Wasserstein distance
    mixtures: tuple[str, ...] = ("2d", "64d")
    schedules: tuple[str, ...] = ("linear", "cosine")
    peers: bool = True  # also run diffusers' schedulers (needs the bench extras)
    seed: int = 0


@dataclass(frozen=True)
class Row:
    """One sampler at one NFE on one problem."""

    mixture: str
    schedule: str
    library: str  # difflab or diffusers
    sampler: str  # name with its grid, e.g. dpmpp_3m@logsnr
    nfe: int
    sw2: float
    mode_tv: float
    ll_gap: float  # E_samples[log q] - E_q[log q]
    flow_rms: float  # RMS distance to the exact flow image (nan for stochastic samplers)
    ll_abs: float  # mean |log q(x_i) - log q(flow_i)|: the gap without cancellation (nan for stochastic samplers)
    seconds: float


def sliced_w2(x: Tensor, y: Tensor, dirs: Tensor) -> float:
    """Sliced Wasserstein-2 between equal-size point sets: RMS over directions of the sorted-projection distance."""
    px, py = (x @ dirs.T).sort(0).values, (y @ dirs.T).sort(0).values  # (n, L)
    return float((px - py).square().mean().sqrt())


def mode_tv(gmm: GaussianMixture, x: Tensor) -> float:
    """Total variation between the weights and the share of points whose most likely component is each one."""
    comp = gmm._component_log_probs(x)[0].argmax(-1)  # (n,)
    share = torch.bincount(comp, minlength=len(gmm.weights)).double() / len(x)
    return float(0.5 * (share - gmm.weights).abs().sum())


@dataclass(frozen=True)
class Problem:
    """A mixture under a schedule, with everything the metrics need computed once."""

    name: str
    schedule_name: str
    gmm: GaussianMixture
    schedule: DiscreteSchedule
    x_T: Tensor  # (n, D) float64 starting noise, sample k from stream (seed, k)
    truth: Tensor  # (n, D) true samples for SW2
    flow: Tensor  # (n, D) exact probability-flow image of x_T
    dirs: Tensor  # (L, D) unit directions
    flow_ll: Tensor  # (n,) log q at the exact flow images: exact samples of q paired with x_T
    floors: dict  # metric -> value for a second true sample set of size n
    seed: int
    calibration: tuple[Tensor, Tensor]  # (noise, its exact flow images): other noise, for fitting grids


def make_problem(mixture: str, schedule: str, n: int, cfg: BenchConfig) -> Problem:
    gmm, sched = MIXTURES[mixture](), DiscreteSchedule(SCHEDULES[schedule](1000))
    g = torch.Generator().manual_seed(cfg.seed + 1)
    D = gmm.dim
    x_T = NoiseSource.for_indices(cfg.seed, range(n)).randn((D,), torch.float64)
    truth = gmm.sample(n, g)[0]
    dirs = torch.randn(cfg.slices, D, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    exact_flow = lambda x: SAMPLERS["rk45"].fn(MixtureDenoiser(gmm, sched), x, sched,  # noqa: E731
                                               make_grid("uniform", sched, 2), rtol=1e-10, atol=1e-10)
    flow = exact_flow(x_T)
    cal = NoiseSource.for_indices(cfg.seed + 7, range(n)).randn((D,), torch.float64)  # apart from x_T and step noise
    floors = noise_floors(gmm, truth, dirs, g)
    return Problem(mixture, schedule, gmm, sched, x_T, truth, flow, dirs, gmm.log_prob(flow), floors, cfg.seed,
                   (cal, exact_flow(cal)))


def noise_floors(gmm: GaussianMixture, truth: Tensor, dirs: Tensor, g: torch.Generator, pairs: int = 8) -> dict:
    """What exact samples score: mean (and sd) over `pairs` fresh true sets of the truth's size against the truth."""
    n, ll_truth = len(truth), float(gmm.log_prob(truth).mean())
    sets = [gmm.sample(n, g)[0] for _ in range(pairs)]
    sw2 = torch.tensor([sliced_w2(o, truth, dirs) for o in sets])
    tv = torch.tensor([mode_tv(gmm, o) for o in sets])
    gap = torch.tensor([float(gmm.log_prob(o).mean()) - ll_truth for o in sets])
    return {"sw2": float(sw2.mean()), "sw2_sd": float(sw2.std()), "mode_tv": float(tv.mean()),
            "mode_tv_sd": float(tv.std()), "ll_gap": float(gap.abs().mean()), "ll_gap_sd": float(gap.std())}


def score_samples(p: Problem, x: Tensor, deterministic: bool) -> tuple[float, float, float, float, float]:
    """(sw2, mode_tv, ll_gap, flow_rms, ll_abs) of samples x; non-finite samples make every error inf."""
    if not bool(torch.isfinite(x).all()):
        return (math.inf,) * 5
    rms = rms_distance(x, p.flow) if deterministic else math.nan
    diff = p.gmm.log_prob(x) - p.flow_ll  # (n,) paired with the exact flow: no sampling noise if deterministic
    return (sliced_w2(x, p.truth, p.dirs), mode_tv(p.gmm, x), float(diff.mean()), rms,
            float(diff.abs().mean()) if deterministic else math.nan)


def difflab_rows(p: Problem, cfg: BenchConfig, log: Callable[[str], None]) -> list[Row]:
    rows = []
    for name, grid, opts in DIFFLAB_ROWS:
        spec = SAMPLERS[name]
        label = f"{name}@{grid}"
        for nfe in cfg.nfes:
            if nfe < spec.evals(opts) + 1 or (grid == "calibrated" and nfe not in CALIBRATED_NFES):
                continue
            steps = spec.steps_for_nfe(name, nfe, opts)
            times = calibrate_grid(spec, MixtureDenoiser(p.gmm, p.schedule), p.schedule, steps, p.calibration[0],
                                   reference=p.calibration[1]) if grid == "calibrated" else \
                make_grid(grid, p.schedule, steps)
            rows.append(_run(p, label, "difflab", not spec.stochastic, lambda den, noise: spec.fn(
                den, p.x_T, p.schedule, times, noise=noise, **opts)))
        log(f"  {label}: " + " ".join(f"{r.nfe}:{r.ll_gap:+.3g}" for r in rows if r.sampler == label))
    for tol in TOLERANCES:
        rows.append(_run(p, f"rk45[{tol:g}]", "difflab", True, lambda den, noise: SAMPLERS["rk45"].fn(
            den, p.x_T, p.schedule, make_grid("uniform", p.schedule, 2), rtol=tol, atol=tol)))
    return rows


def _run(p: Problem, label: str, library: str, deterministic: bool, call: Callable) -> Row:
    den = CountingDenoiser(MixtureDenoiser(p.gmm, p.schedule))
    t0 = time.perf_counter()
    x = call(den, NoiseSource.for_indices(p.seed + 1, range(len(p.x_T))))  # step noise: streams apart from x_T
    return Row(p.name, p.schedule_name, library, label, den.nfe // 1, *score_samples(p, x, deterministic),
               round(time.perf_counter() - t0, 2))


def peer_rows(p: Problem, cfg: BenchConfig, log: Callable[[str], None]) -> list[Row]:
    from difflab.eval.peers import PEER_SAMPLERS, peer_is_stochastic, sample_with_peer

    def eps_model(x: Tensor, ab: Tensor) -> Tensor:
        a, s = float(ab[0].sqrt()), float((1 - ab[0]).sqrt())
        return (x - a * p.gmm.posterior_mean(x, a, s)) / s  # E[eps | x_t] of the exact mixture

    rows = []
    betas = p.schedule.betas[1:]
    for name in PEER_SAMPLERS:
        for nfe in cfg.nfes:
            t0 = time.perf_counter()
            try:
                x, calls = sample_with_peer(name, nfe, eps_model, betas, p.x_T, seed=cfg.seed)
            except Exception as e:  # a scheduler that cannot run this NFE / schedule: recorded, not fatal
                log(f"  diffusers {name} at NFE {nfe}: {type(e).__name__}: {(str(e) or repr(e)).splitlines()[0][:80]}")
                continue
            rows.append(Row(p.name, p.schedule_name, "diffusers", name, calls,
                            *score_samples(p, x, not peer_is_stochastic(name)), round(time.perf_counter() - t0, 2)))
        log(f"  diffusers {name}: " + " ".join(f"{r.nfe}:{r.ll_gap:+.3g}" for r in rows if r.sampler == name))
    return rows


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> tuple[list[Row], dict]:
    """All rows, and the noise floors per problem."""
    rows, floors = [], {}
    for mixture in cfg.mixtures:
        n = cfg.samples[0] if mixture == "2d" else cfg.samples[1]
        for schedule in cfg.schedules:
            log(f"{mixture} mixture, {schedule} schedule, {n} samples")
            p = make_problem(mixture, schedule, n, cfg)
            floors[f"{mixture}/{schedule}"] = p.floors
            rows += difflab_rows(p, cfg, log)
            if cfg.peers:
                rows += peer_rows(p, cfg, log)
    return rows, floors


def best(rows: list[Row], mixture: str, schedule: str, library: str, nfe: int, metric: str) -> Optional[Row]:
    """The row with the smallest |metric| at exactly this NFE (or the nearest NFE below it, for 2-eval samplers)."""
    cand = [r for r in rows if (r.mixture, r.schedule, r.library) == (mixture, schedule, library)
            and nfe - 1 <= r.nfe <= nfe and not math.isnan(getattr(r, metric))]
    return min(cand, key=lambda r: abs(getattr(r, metric)), default=None)


def order(rows: list[Row], mixture: str, schedule: str, sampler: str, metric: str, lo: int = 20, hi: int = 100) -> float:
    """Convergence order: minus the log-log slope of |metric| against NFE between lo and hi."""
    pts = [(r.nfe, abs(getattr(r, metric))) for r in rows if (r.mixture, r.schedule, r.sampler) == (mixture, schedule, sampler)
           and lo - 1 <= r.nfe <= hi and abs(getattr(r, metric)) > 0]
    if len(pts) < 2:
        return math.nan
    x = torch.tensor([math.log(a) for a, _ in pts])
    y = torch.tensor([math.log(b) for _, b in pts])
    return float(-((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum())


def rows_as_dicts(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]
