"""The low-resolution image of super-resolution (SR3): A^+ A x for the average-pooling operator A of unet.lowres_factor,
upsampled back to full size and concatenated to the network's input channels; null = zeros."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from difflab.condition import LOWRES, Condition, ConditionKind, register_kind
from difflab.operators import Downsample, Operator


@register_kind
@dataclass(frozen=True)
class LowresKind(ConditionKind):
    factor: int

    name = LOWRES
    inject = "concat"

    @classmethod
    def from_config(cls, cfg) -> "LowresKind | None":
        factor = cfg.unet.lowres_factor if cfg.model == "diffusion" and cfg.arch == "unet" else 0
        return cls(factor) if factor else None

    def channels(self, in_channels: int) -> int:
        return in_channels

    def null(self, shape: tuple[int, ...]) -> Tensor:
        return torch.zeros(shape)

    def reader(self, data) -> Callable[[Tensor], Tensor]:
        op = Downsample(self.factor, tuple(data.x.shape[1:]))  # refuses a size it cannot divide
        x = data.x
        return lambda idx: op.pinv(op.forward(x[idx]))  # (B, C, H, W): the example's own low-resolution image

    def takes(self, op: Operator) -> bool:
        """Whether measurements of `op` are this condition's low-resolution images."""
        return isinstance(op, Downsample) and op.factor == self.factor

    def measured(self, op: Downsample, y: Tensor) -> Condition:
        """Low-resolution images y (B, C, h, w) measured by `op` as the condition: A^+ y at full size."""
        up = op.pinv(y)  # (B, C, H, W)
        return self.condition(up, tuple(up.shape[1:]))
