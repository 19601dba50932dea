"""Noise schedules: the continuous interface, the discrete DDPM tables, the SDEs, and time grids."""
from difflab.schedules.base import Schedule, VPSchedule
from difflab.schedules.config import ScheduleConfig, build_schedule
from difflab.schedules.continuous import EDM, VE, SubVP, VPLinear
from difflab.schedules.discrete import DiscreteSchedule, cosine_betas, linear_betas

__all__ = ["Schedule", "VPSchedule", "ScheduleConfig", "build_schedule", "DiscreteSchedule", "linear_betas",
           "cosine_betas", "VPLinear", "SubVP", "VE", "EDM"]
