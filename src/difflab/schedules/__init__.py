"""Noise schedules: the continuous interface and the discrete DDPM tables."""
from difflab.schedules.base import Schedule
from difflab.schedules.discrete import DiscreteConfig, DiscreteSchedule, cosine_betas, linear_betas

__all__ = ["Schedule", "DiscreteConfig", "DiscreteSchedule", "linear_betas", "cosine_betas"]
