"""Noise-level embedding: sinusoidal features of c_noise = t_VP(sigma~) (Transformer positional encoding of 1000 c_noise,
as DDPM embeds its step), plus the embedding of every condition kind that feeds it (a class label, ...)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from difflab.condition import Condition, ConditionKind

NOISE_SCALE = 1000.0  # c_noise = t_VP in [0, 1] over the DDPM range: DDPM's step index


ORDERS = ("cos_sin", "sin_cos")  # which half of the features comes first (diffusers: flip_sin_to_cos true / false)


def sinusoidal(v: Tensor, dim: int, scale: float = NOISE_SCALE, max_period: float = 10000.0, order: str = "cos_sin",
               freq_shift: float = 0.0) -> Tensor:
    """(B,) noise levels -> (B, dim) features [cos(w_k s v), sin(w_k s v)], w_k = max_period^(-k / (half - shift))
    (the Transformer's positional encoding; diffusers' Timesteps with its flip_sin_to_cos and freq_shift).

    The arguments are formed in float64 (noise levels stay exact up to the network), the features are float32."""
    half = dim // 2
    k = torch.arange(half, device=v.device, dtype=torch.float64)
    freqs = torch.exp(-math.log(max_period) * k / (half - freq_shift))
    args = (scale * v.double())[:, None] * freqs[None]  # (B, half)
    pair = [torch.cos(args), torch.sin(args)]
    emb = torch.cat(pair if order == "cos_sin" else pair[::-1], dim=-1).float()
    return nn.functional.pad(emb, (0, dim % 2))


class NoiseEmbedding(nn.Module):
    """sinusoidal(c_noise) -> Linear -> SiLU -> Linear, plus module(value) of each 'embedding' condition kind (its
    null value where a batch does not carry the field: the unconditional model)."""

    def __init__(self, base: int, dim: int, kinds: Sequence[ConditionKind] = (), order: str = "cos_sin",
                 freq_shift: float = 0.0):
        super().__init__()
        self.base, self.order, self.freq_shift = base, order, freq_shift
        self.mlp = nn.Sequential(nn.Linear(base, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.kinds = tuple(k for k in kinds if k.inject == "embedding")
        for k in self.kinds:  # kept under the kind's own name: its checkpoint key (label: embed.classes)
            self.add_module(k.module_name or k.name, k.module(dim))

    @property
    def conditions(self) -> tuple[str, ...]:
        """The condition fields this embedding reads."""
        return tuple(k.field for k in self.kinds)

    def forward(self, noise_level: Tensor, cond: Condition | None = None) -> Tensor:
        feats = sinusoidal(noise_level, self.base, order=self.order, freq_shift=self.freq_shift)  # (B, base)
        emb = self.mlp(feats.to(self.mlp[0].weight.dtype))  # (B, dim)
        for k in self.kinds:
            if cond is not None and k.field in cond.fields:
                v = cond[k.field].to(emb.device)
            else:
                null = k.null(())
                v = null.to(emb.device).expand(len(emb), *null.shape)
            emb = emb + getattr(self, k.module_name or k.name)(v)
        return emb
