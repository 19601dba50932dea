"""Config -> objects: the network, the schedule, the denoiser and the training objective, each by a table keyed by
the config's names (cfg.model, cfg.arch), never by inspecting objects."""
from __future__ import annotations

from typing import Callable

from torch import nn

from difflab.conditions.kinds import kinds_for
from difflab.config import RunConfig
from difflab.data.dataset import DataSpec
from difflab.losses.classifier import ClassifierObjective
from difflab.losses.objective import OBJECTIVES, Objective
from difflab.nn import MLP, NoisyClassifier, UNet
from difflab.precond import Parameterization, Precond, noise_input_fn
from difflab.schedules import Schedule, build_schedule as _build
from difflab.vae import HierarchicalVAE, VAEObjective

# with a learned variance the network outputs twice the channels (prediction, variance fraction)
ARCHS: dict[str, Callable[[RunConfig, int], nn.Module]] = {
    "unet": lambda cfg, k: UNet(cfg.unet, out_mult=k, kinds=kinds_for(cfg)),
    "mlp": lambda cfg, k: MLP(cfg.mlp, out_mult=k, kinds=kinds_for(cfg))}

NETWORKS: dict[str, Callable[[RunConfig], nn.Module]] = {
    "diffusion": lambda cfg: ARCHS[cfg.arch](cfg, 2 if cfg.train.learn_variance else 1),
    "vae": lambda cfg: HierarchicalVAE(cfg.vae),
    "classifier": lambda cfg: NoisyClassifier(cfg.classifier),
}


def build_network(cfg: RunConfig) -> nn.Module:
    return NETWORKS[cfg.model](cfg)


def build_schedule(cfg: RunConfig) -> Schedule:
    return _build(cfg.schedule)


def parameterization(cfg: RunConfig) -> Parameterization:
    return Parameterization(cfg.train.parameterization, cfg.train.sigma_data)


def build_denoiser(cfg: RunConfig, net: nn.Module) -> Precond:
    """The preconditioned denoiser (x_t, t, cond) -> Prediction of a diffusion network."""
    schedule = build_schedule(cfg)
    return Precond(net, schedule, parameterization(cfg), cfg.train.learn_variance,
                   noise_input_fn(cfg.train.noise_input, schedule))


def _diffusion(cfg: RunConfig, spec: DataSpec, net: nn.Module) -> Objective:
    tc = cfg.train
    return OBJECTIVES[tc.objective](build_schedule(cfg), parameterization(cfg), tc.learn_variance, tc.hybrid_weight,
                                    tc.cond_dropout, conditions=net.conditions, quantized=spec.quantized,
                                    p_mean=tc.edm_p_mean, p_std=tc.edm_p_std, integer_steps=not tc.continuous_levels)


MODEL_OBJECTIVES: dict[str, Callable[[RunConfig, DataSpec, nn.Module], Objective]] = {  # cfg.model -> its objective
    "diffusion": _diffusion,
    "vae": lambda cfg, spec, net: VAEObjective(quantized=spec.quantized, kl_weight=cfg.vae.kl_weight),
    "classifier": lambda cfg, spec, net: ClassifierObjective(build_schedule(cfg)),
}


def build_objective(cfg: RunConfig, spec: DataSpec, net: nn.Module) -> Objective:
    """The objective of cfg.model for data described by `spec`, training `net` (unwrapped)."""
    return MODEL_OBJECTIVES[cfg.model](cfg, spec, net)


# how many classes a model takes, and the config key that sets it
CLASSES: dict[str, Callable[[RunConfig], tuple[int, str]]] = {
    "diffusion": lambda cfg: ((cfg.unet if cfg.arch == "unet" else cfg.mlp).num_classes, f"{cfg.arch}.num_classes"),
    "vae": lambda cfg: (0, "vae"),
    "classifier": lambda cfg: (cfg.classifier.num_classes, "classifier.num_classes"),
}


def model_classes(cfg: RunConfig) -> tuple[int, str]:
    return CLASSES[cfg.model](cfg)
