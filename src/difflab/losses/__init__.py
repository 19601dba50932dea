"""Denoising losses."""
from difflab.losses.simple import sample_steps, simple_loss

__all__ = ["simple_loss", "sample_steps"]
