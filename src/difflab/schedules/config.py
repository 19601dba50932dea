"""Which schedule a run uses: discrete DDPM tables or a continuous-time SDE, one typed config."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from difflab.errors import UserError
from difflab.schedules.base import Schedule
from difflab.schedules.continuous import EDM, VE, SubVP, VPLinear
from difflab.schedules.discrete import DiscreteSchedule, cosine_betas, linear_betas, scaled_linear_betas

DISCRETE = ("linear", "scaled_linear", "cosine")  # kinds trained on a beta table's integer steps; the others are SDEs


@dataclass(frozen=True)
class ScheduleConfig:
    """The forward process: a beta table (trained on integer steps) or an SDE (trained on t ~ U[t_min, 1])."""

    kind: str = "linear"  # linear, scaled_linear (Stable Diffusion's), cosine (discrete DDPM tables) or vp, subvp, ve, edm (continuous SDEs)
    T: int = 1000  # discrete: number of diffusion steps
    beta_1: float = 1e-4  # linear, scaled_linear: first beta
    beta_T: float = 0.02  # linear, scaled_linear: last beta
    beta_min: float = 0.1  # vp, subvp: beta(0)
    beta_max: float = 20.0  # vp, subvp: beta(1)
    sigma_min: float = 0.0  # ve, edm: smallest noise level sampled (0 = 0.01 for ve, 0.002 for edm)
    sigma_max: float = 0.0  # ve, edm: largest noise level (0 = 50 for ve, 80 for edm)
    t_min: float = 0.0  # continuous: smallest training / sampling time (0 = the schedule's default)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_MAKERS:
            raise UserError(f"schedule.kind must be one of {tuple(SCHEDULE_MAKERS)}, got {self.kind!r}")
        if self.T < 2:
            raise UserError(f"schedule.T must be at least 2, got {self.T}")
        if not 0 < self.beta_1 <= self.beta_T < 1:
            raise UserError(f"need 0 < schedule.beta_1 <= schedule.beta_T < 1, got {self.beta_1}, {self.beta_T}")
        if not 0 < self.beta_min < self.beta_max:
            raise UserError(f"need 0 < schedule.beta_min < schedule.beta_max, got {self.beta_min}, {self.beta_max}")
        if self.sigma_min < 0 or self.sigma_max < 0 or (self.sigma_min and self.sigma_max and self.sigma_min >= self.sigma_max):
            raise UserError(f"need 0 < schedule.sigma_min < schedule.sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if not 0 <= self.t_min < 1:
            raise UserError(f"schedule.t_min must be in [0, 1), got {self.t_min}")

    @property
    def discrete(self) -> bool:
        """Trained on integer steps t = i / T (the ELBO and Algorithm 2's full grid exist)."""
        return self.kind in DISCRETE


def _vp(cfg: ScheduleConfig) -> Schedule:
    t_min = {"t_min": cfg.t_min} if cfg.t_min else {}
    return (VPLinear if cfg.kind == "vp" else SubVP)(cfg.beta_min, cfg.beta_max, **t_min)


def _ve(cfg: ScheduleConfig) -> Schedule:
    t_min = {"t_min": cfg.t_min} if cfg.t_min else {}
    sig = {k: v for k, v in (("sigma_min", cfg.sigma_min), ("sigma_max", cfg.sigma_max)) if v}
    return (VE if cfg.kind == "ve" else EDM)(**sig, **t_min)


SCHEDULE_MAKERS: dict[str, Callable[[ScheduleConfig], Schedule]] = {  # schedule.kind -> the schedule object
    "linear": lambda cfg: DiscreteSchedule(linear_betas(cfg.T, cfg.beta_1, cfg.beta_T)),
    "scaled_linear": lambda cfg: DiscreteSchedule(scaled_linear_betas(cfg.T, cfg.beta_1, cfg.beta_T)),
    "cosine": lambda cfg: DiscreteSchedule(cosine_betas(cfg.T)),
    "vp": _vp, "subvp": _vp, "ve": _ve, "edm": _ve,
}


def build_schedule(cfg: ScheduleConfig) -> Schedule:
    """The schedule object a config names."""
    return SCHEDULE_MAKERS[cfg.kind](cfg)
