"""Architectures only: they take (x, t, cond) and never see a schedule."""
from difflab.nn.mlp import MLP, MLPConfig
from difflab.nn.unet import UNet, UNetConfig

__all__ = ["UNet", "UNetConfig", "MLP", "MLPConfig"]
