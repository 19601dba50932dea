"""Stateless samplers: sample(denoiser, x_T, schedule, grid, *, noise, ...)."""
from difflab.samplers.ancestral import sample_ancestral
from difflab.samplers.ddim import sample_ddim
from difflab.samplers.noise import NoiseSource

__all__ = ["sample_ancestral", "sample_ddim", "NoiseSource"]
