"""A small residual MLP denoiser for 2-D and tabular data."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F

from difflab.errors import UserError
from difflab.nn.embedding import TimeEmbedding


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
    """net(x (B, D), t (B,), cond) -> (B, D): input projection, residual SiLU blocks with time added, output."""

    def __init__(self, cfg: MLPConfig, out_mult: int = 1):
        super().__init__()
        self.cfg = cfg
        self.embed = TimeEmbedding(cfg.hidden, cfg.hidden, cfg.num_classes)
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden)) for _ in range(cfg.depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, out_mult * cfg.dim))

    def check_input(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.cfg.dim:
            raise UserError(f"the MLP takes (B, {self.cfg.dim}) data, got shape {tuple(x.shape)}: set mlp.dim, "
                            "or arch=unet for images")

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        emb = self.embed(t, cond)  # (B, hidden)
        h = self.inp(x)
        for blk in self.blocks:
            h = h + blk(h + emb)
        return self.out(h)
