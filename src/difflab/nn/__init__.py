"""Architectures only: they take (c_in x, c_noise, cond) and never see a schedule."""
from difflab.nn.classifier import ClassifierConfig, NoisyClassifier
from difflab.nn.mlp import MLP, MLPConfig
from difflab.nn.unet import UNet, UNetConfig

__all__ = ["UNet", "UNetConfig", "MLP", "MLPConfig", "NoisyClassifier", "ClassifierConfig"]
