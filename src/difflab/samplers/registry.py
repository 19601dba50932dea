"""Every sampler by name, with what it costs: all share sample(denoiser, x, schedule, grid, *, noise, cond, hook,
callback, **options) -> x_0, and a grid of n intervals costs evals_per_step * (n - 1) + 1 network evaluations.
CountingDenoiser is the one place network evaluations are counted."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor

from difflab.errors import UserError
from difflab.condition import Condition
from difflab.prediction import Denoiser, Prediction
from difflab.samplers.ancestral import sample_ancestral
from difflab.samplers.ddim import sample_ddim
from difflab.samplers.dpm_solver import sample_dpmpp_2m, sample_dpmpp_3m, sample_dpmpp_pc
from difflab.samplers.langevin import sample_annealed_langevin, sample_predictor_corrector
from difflab.samplers.ode import sample_edm_heun, sample_heun
from difflab.samplers.rk45 import sample_rk45
from difflab.samplers.sde import sample_euler_maruyama
from difflab.schedules.base import Schedule
from difflab.schedules.grids import make_grid


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler and its cost model."""

    fn: Callable[..., Tensor]
    stochastic: bool  # draws noise after x_T with its default options (ddim: only with eta > 0)
    evals: Callable[[dict], int] | None  # network evaluations per interval before the last; None = adaptive (RK45)
    default_grid: str  # the grid it is usually run on
    summary: str  # one line for --help and the docs
    default_nfe: int | None  # its usual budget when none is asked; None: every step of a beta table (else 1000)
    max_step: float = 1.5  # log-SNR per step on the 'stable' grid (explicit steps are stable below ~2)
    one_step: bool = False  # a step depends only on (x_t, t, s): no history, so it can restart anywhere (RePaint)
    options: Callable[[Any], dict] = lambda cfg: {}  # its options from a run config (cfg.sample: the request)
    strided_grid: str | None = None  # a 'discrete' sampler's grid when it skips table steps (or has no table)

    @property
    def adaptive(self) -> bool:
        """Its cost follows tolerances, not a grid (RK45)."""
        return self.evals is None

    def grid_for(self, schedule: Schedule, steps: int | None = None) -> str:
        """The usual grid on this schedule for `steps` intervals (None: its default budget): a 'discrete' sampler
        walks every step of a beta table, and takes its strided grid when it skips steps or there is no table."""
        if self.default_grid != "discrete":
            return self.default_grid
        every = schedule.steps is not None and (steps is None or steps >= schedule.steps)
        return "discrete" if every else self.strided_grid or "uniform"

    def grid(self, name: str, schedule: Schedule, steps: int, t_start: float = 1.0) -> Tensor:
        """The named grid ('auto': this sampler's usual one) of `steps` intervals, with this sampler's step bound."""
        name = self.grid_for(schedule, steps) if name == "auto" else name
        return make_grid(name, schedule, steps, t_start=t_start, max_step=self.max_step)

    def default_steps(self, name: str, schedule: Schedule, options: dict | None = None) -> int:
        """Grid intervals when neither NFE nor steps is asked: the sampler's default budget."""
        if self.default_nfe is None:
            return schedule.steps or 1000
        return self.steps_for_nfe(name, self.default_nfe, options)

    def nfe(self, steps: int, options: dict | None = None) -> int:
        """Network evaluations for a grid of `steps` intervals ending with the final denoising step."""
        if self.evals is None:
            raise UserError("rk45 is adaptive: its cost follows rtol/atol, not the grid")
        return self.evals(options or {}) * (steps - 1) + 1

    def steps_for_nfe(self, name: str, nfe: int, options: dict | None = None) -> int:
        """The largest grid (intervals) whose cost is at most nfe; at least one step before the final denoising."""
        if self.evals is None:
            raise UserError("rk45 is adaptive: set its tolerances (rtol, atol) instead of an NFE")
        k = self.evals(options or {})
        if nfe < k + 1:
            raise UserError(f"sampler {name} needs at least {k + 1} network evaluations (sample.nfe), got {nfe}")
        return (nfe - 1) // k + 1


def _one(_: dict) -> int:
    return 1


SAMPLERS: dict[str, SamplerSpec] = {
    # default grids: each sampler's most accurate at 5-50 NFE on the exact-score mixtures (bench/default_grids.py)
    "ancestral": SamplerSpec(sample_ancestral, True, _one, "discrete", "Algorithm 2: x_s ~ p_theta(x_s | x_t) (option variance)", None,
                             one_step=True, options=lambda cfg: {"variance": cfg.sampling_variance},
                             strided_grid="focus"),
    "ddim": SamplerSpec(sample_ddim, False, _one, "focus", "DDIM; eta = 0 deterministic, eta = 1 ancestral (option eta)", 50,
                        one_step=True, options=lambda cfg: {"eta": cfg.sample.eta}),
    "euler_maruyama": SamplerSpec(sample_euler_maruyama, True, _one, "stable", "Euler–Maruyama on the reverse-time SDE", 1000,
                                  one_step=True),
    "pc": SamplerSpec(sample_predictor_corrector, True, lambda o: 1 + o.get("corrector_steps", 1), "stable",
                      "reverse-diffusion predictor + Langevin corrector (options snr, corrector_steps)", 1000, max_step=4.0),
    "langevin": SamplerSpec(sample_annealed_langevin, True, lambda o: 1 + o.get("langevin_steps", 1), "stable",
                            "annealed Langevin dynamics (options snr, langevin_steps)", 200, max_step=4.0),
    "heun": SamplerSpec(sample_heun, False, lambda o: 2, "stable", "Heun on the probability-flow ODE in t", 99, max_step=2.5),
    "rk45": SamplerSpec(sample_rk45, False, None, "uniform", "adaptive RK45 on the probability-flow ODE (options rtol, atol)", None),
    "dpmpp_2m": SamplerSpec(sample_dpmpp_2m, False, _one, "focus", "DPM-Solver++(2M), second order", 20),
    "dpmpp_3m": SamplerSpec(sample_dpmpp_3m, False, _one, "focus", "DPM-Solver++(3M), third order", 20),
    "dpmpp_pc": SamplerSpec(sample_dpmpp_pc, False, _one, "focus",
                            "DPM-Solver++(3M) predictor + 4th-order corrector, second-order final step (option order)", 20),
    "edm": SamplerSpec(sample_edm_heun, False, lambda o: 2, "stable", "EDM's Heun in sigma (Karras et al. 2022)", 35,
                       max_step=2.5),
}


AUTO_NFE = 20  # the budget sample.sampler = auto takes when no NFE is asked
# (largest NFE, sampler): the smallest worst-case sliced W2 over the bench's four exact-score problems, with the
# log-likelihood gap breaking the tie at 20 (bench/default_grids.py, docs/samplers.md)
AUTO: tuple[tuple[int, str], ...] = ((10, "dpmpp_pc"), (1_000_000, "dpmpp_3m"))


def auto_sampler(nfe: int) -> str:
    """The most accurate sampler at this budget on its default grid (the exact-score mixtures' worst case)."""
    return next(name for top, name in AUTO if nfe <= top)


def register_sampler(name: str, spec: SamplerSpec) -> SamplerSpec:
    """Make a sampler known by name: sample.sampler, Pipeline.sample(sampler=name), the CLI's --sampler."""
    SAMPLERS[name] = spec
    return spec


def get_sampler(name: str) -> SamplerSpec:
    if name not in SAMPLERS:
        raise UserError(f"sampler must be one of {sorted(SAMPLERS)}, got {name!r}")
    return SAMPLERS[name]


class CountingDenoiser:
    """Wraps a denoiser and counts its network evaluations (NFE). A transform that calls its inner denoiser twice
    per step is counted twice: wrap the innermost denoiser. With `batch` (the samples per sampler call) a call on a
    doubled batch (classifier-free guidance's [x; x]) counts as the 2 evaluations per sample it costs."""

    def __init__(self, denoiser: Denoiser, batch: int | None = None):
        self.denoiser, self.batch, self.nfe, self.rows = denoiser, batch, 0, 0

    def __call__(self, x_t: Tensor, t: Tensor, cond: Condition | None = None) -> Prediction:
        self.nfe += 1 if self.batch is None else -(-len(x_t) // self.batch)
        self.rows += len(x_t)  # examples evaluated: rows / samples = NFE per sample over any batching
        return self.denoiser(x_t, t, cond)
