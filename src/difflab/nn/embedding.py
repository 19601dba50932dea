"""Noise-level embedding: sinusoidal features of c_noise = t_VP(sigma~) (Transformer positional encoding of 1000 c_noise,
as DDPM embeds its step), and the class-label embedding with its null label."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from difflab.condition import LABEL, Condition

NOISE_SCALE = 1000.0  # c_noise = t_VP in [0, 1] over the DDPM range: DDPM's step index


def sinusoidal(v: Tensor, dim: int, scale: float = NOISE_SCALE, max_period: float = 10000.0) -> Tensor:
    """(B,) noise levels -> (B, dim) features [cos(w_k s v), sin(w_k s v)], w_k = max_period^(-k / half).

    The arguments are formed in float64 (noise levels stay exact up to the network), the features are float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=v.device, dtype=torch.float64) / half)
    args = (scale * v.double())[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).float()
    return nn.functional.pad(emb, (0, dim % 2))


class NoiseEmbedding(nn.Module):
    """sinusoidal(c_noise) -> Linear -> SiLU -> Linear, plus an optional learned class embedding (index C = null)."""

    def __init__(self, base: int, dim: int, num_classes: int = 0):
        super().__init__()
        self.base = base
        self.mlp = nn.Sequential(nn.Linear(base, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.num_classes = num_classes
        self.classes = nn.Embedding(num_classes + 1, dim) if num_classes else None

    @property
    def conditions(self) -> tuple[str, ...]:
        """The condition fields this embedding reads."""
        return (LABEL,) if self.classes is not None else ()

    def forward(self, noise_level: Tensor, cond: Condition | None = None) -> Tensor:
        emb = self.mlp(sinusoidal(noise_level, self.base).to(self.mlp[0].weight.dtype))  # (B, dim)
        if self.classes is not None:
            if cond is None or LABEL not in cond.fields:  # the unconditional model: the null label
                label = torch.full((noise_level.shape[0],), self.num_classes, device=emb.device, dtype=torch.long)
            else:
                label = cond[LABEL].long()
            emb = emb + self.classes(label)
        return emb
