"""Exponential moving average of weights, with its half-life counted in images (independent of batch size)."""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_beta(batch_images: int, half_life_images: float) -> float:
    """Decay per step so that weights halve their influence every `half_life_images` images."""
    return 0.5 ** (batch_images / max(half_life_images, 1e-8))


class EMA:
    """A separate copy of the network; never written over the live weights."""

    def __init__(self, model: nn.Module):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, beta: float) -> None:
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - beta)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)
