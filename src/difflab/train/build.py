"""Config -> objects: the network, the schedule, the denoiser."""
from __future__ import annotations

from torch import nn

from difflab.config import RunConfig
from difflab.nn import MLP, UNet
from difflab.prediction import NetworkDenoiser
from difflab.schedules import Schedule, build_schedule as _build

# with a learned variance the network outputs twice the channels (prediction, variance fraction)
ARCHS = {"unet": lambda cfg, k: UNet(cfg.unet, out_mult=k), "mlp": lambda cfg, k: MLP(cfg.mlp, out_mult=k)}


def build_network(cfg: RunConfig) -> nn.Module:
    return ARCHS[cfg.arch](cfg, 2 if cfg.train.learn_variance else 1)


def build_schedule(cfg: RunConfig) -> Schedule:
    return _build(cfg.schedule)


def build_denoiser(cfg: RunConfig, net: nn.Module) -> NetworkDenoiser:
    return NetworkDenoiser(net, build_schedule(cfg), cfg.train.parameterization, cfg.train.learn_variance)
