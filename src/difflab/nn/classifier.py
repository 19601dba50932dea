"""A noise-conditional classifier p(y | x_t, t) (seed: 'Conditional sampling', classifier guidance): the U-Net's
down path and middle, pooled, then a linear head. It sees the same preconditioned input as a denoiser."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from difflab.condition import Condition
from difflab.errors import UserError
from difflab.nn.blocks import Downsample, ResBlock, SelfAttention, Stage, group_norm
from difflab.nn.embedding import NoiseEmbedding


@dataclass(frozen=True)
class ClassifierConfig:
    """Shape of the classifier; level l works at resolution size / 2^l with width base * mult[l]."""

    in_channels: int = 1  # image channels (1 grey, 3 RGB)
    base_channels: int = 32  # width of the first level
    channel_mult: tuple[int, ...] = (1, 2, 2)  # width multiplier per level
    num_res_blocks: int = 1  # ResNet blocks per level
    attention_levels: tuple[int, ...] = (2,)  # levels with self-attention after each ResNet block
    num_classes: int = 10  # classes of y

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        if self.in_channels not in (1, 3) or self.base_channels < 1 or not self.channel_mult \
                or min(self.channel_mult) < 1 or self.num_res_blocks < 1:
            raise UserError("classifier.in_channels must be 1 or 3, classifier.base_channels and num_res_blocks "
                            "positive, classifier.channel_mult a non-empty list of positive multipliers, e.g. [1, 2, 2]")
        if any(not 0 <= lv < len(self.channel_mult) for lv in self.attention_levels):
            raise UserError(f"classifier.attention_levels must lie in 0..{len(self.channel_mult) - 1}")
        if self.num_classes < 2:
            raise UserError(f"classifier.num_classes must be at least 2, got {self.num_classes}")

    @property
    def factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


class NoisyClassifier(nn.Module):
    """logits = net(c_in x (B, C, H, W), c_noise (B,)) -> (B, num_classes)."""

    conditions: tuple[str, ...] = ()

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        ch, emb_dim = cfg.base_channels, 4 * cfg.base_channels
        self.embed = NoiseEmbedding(ch, emb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        self.down, c = nn.ModuleList(), ch
        for lv, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                attn = SelfAttention(ch * mult) if lv in cfg.attention_levels else None
                self.down.append(Stage(ResBlock(c, ch * mult, emb_dim), attn, takes_skip=False))
                c = ch * mult
            if lv < len(cfg.channel_mult) - 1:
                self.down.append(Downsample(c))
        self.mid = Stage(ResBlock(c, c, emb_dim), SelfAttention(c), takes_skip=False)
        self.head = nn.Sequential(group_norm(c), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(c, cfg.num_classes))

    def check_input(self, x: Tensor) -> None:
        f = self.cfg.factor
        if x.ndim != 4 or x.shape[1] != self.cfg.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise UserError(f"the classifier takes (B, {self.cfg.in_channels}, H, W) images with H, W divisible by "
                            f"{f}, got {tuple(x.shape)}: set classifier.in_channels / channel_mult")

    def forward(self, x: Tensor, noise_level: Tensor, cond: Condition | None = None) -> Tensor:
        emb = self.embed(noise_level)  # (B, 4 base)
        h = self.conv_in(x)  # (B, base, H, W)
        for layer in self.down:
            h = layer(h, emb)
        return self.head(self.mid(h, emb))  # (B, num_classes)
