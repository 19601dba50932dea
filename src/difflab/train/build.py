"""Config -> objects: the network, the schedule, the denoiser."""
from __future__ import annotations

from torch import nn

from difflab.config import RunConfig
from difflab.nn import MLP, UNet
from difflab.prediction import NetworkDenoiser
from difflab.schedules.discrete import DiscreteSchedule

ARCHS = {"unet": lambda cfg: UNet(cfg.unet), "mlp": lambda cfg: MLP(cfg.mlp)}


def build_network(cfg: RunConfig) -> nn.Module:
    return ARCHS[cfg.arch](cfg)


def build_schedule(cfg: RunConfig) -> DiscreteSchedule:
    return DiscreteSchedule.from_config(cfg.schedule)


def build_denoiser(cfg: RunConfig, net: nn.Module) -> NetworkDenoiser:
    return NetworkDenoiser(net, build_schedule(cfg), cfg.train.parameterization)
