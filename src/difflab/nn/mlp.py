"""A small residual MLP denoiser for 2-D and tabular data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import Tensor, nn

from difflab.condition import Condition, ConditionKind
from difflab.errors import UserError
from difflab.nn.embedding import NoiseEmbedding


@dataclass(frozen=True)
class MLPConfig:
    """Width and depth of the MLP; input is (B, dim)."""

    dim: int = 2  # data dimension
    hidden: int = 128  # hidden width
    depth: int = 3  # residual blocks
    num_classes: int = 0  # > 0 adds a class embedding

    def __post_init__(self) -> None:
        if min(self.dim, self.hidden, self.depth) < 1:
            raise UserError("mlp.dim, mlp.hidden and mlp.depth must be positive")


class MLP(nn.Module):
    """net(x (B, D), c_noise (B,), cond) -> (B, D): input projection, residual SiLU blocks with the noise level added."""

    def __init__(self, cfg: MLPConfig, out_mult: int = 1, kinds: Sequence[ConditionKind] = ()):
        super().__init__()
        self.cfg = cfg
        other = [k.name for k in kinds if k.inject not in ("embedding", "target")]
        if other:
            raise UserError(f"the MLP takes conditions through its noise embedding only, not {other[0]!r}: use arch=unet")
        self.embed = NoiseEmbedding(cfg.hidden, cfg.hidden, kinds)
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden)) for _ in range(cfg.depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, out_mult * cfg.dim))

    @property
    def conditions(self) -> tuple[str, ...]:
        """The condition fields the network takes (its embedding kinds)."""
        return self.embed.conditions

    def check_input(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.cfg.dim:
            raise UserError(f"the MLP takes (B, {self.cfg.dim}) data, got shape {tuple(x.shape)}: set mlp.dim, "
                            "or arch=unet for images")

    def forward(self, x: Tensor, noise_level: Tensor, cond: Condition | None = None) -> Tensor:
        emb = self.embed(noise_level, cond)  # (B, hidden)
        h = self.inp(x)
        for blk in self.blocks:
            h = h + blk(h + emb)
        return self.out(h)
