"""Sinusoidal noise-level embedding (Transformer positional encoding applied to 1000 t)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal(t: Tensor, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> Tensor:
    """(B,) times in [0, 1] -> (B, dim) features [cos(w_k s t), sin(w_k s t)], w_k = max_period^(-k / half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (scale * t.float())[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return nn.functional.pad(emb, (0, dim % 2))


class TimeEmbedding(nn.Module):
    """sinusoidal(t) -> Linear -> SiLU -> Linear, plus an optional learned class embedding (index C = no class)."""

    def __init__(self, base: int, dim: int, num_classes: int = 0):
        super().__init__()
        self.base = base
        self.mlp = nn.Sequential(nn.Linear(base, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.num_classes = num_classes
        self.classes = nn.Embedding(num_classes + 1, dim) if num_classes else None

    def forward(self, t: Tensor, cond: Tensor | None = None) -> Tensor:
        emb = self.mlp(sinusoidal(t, self.base))  # (B, dim)
        if self.classes is not None:
            if cond is None:
                cond = torch.full((t.shape[0],), self.num_classes, device=t.device, dtype=torch.long)
            emb = emb + self.classes(cond.long())
        return emb
