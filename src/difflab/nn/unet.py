"""The U-Net of DDPM: ResNet blocks, self-attention at chosen resolutions, skip connections."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from difflab.condition import Condition, ConditionKind
from difflab.errors import UserError
from difflab.nn.blocks import CrossAttention, Downsample, ResBlock, SelfAttention, Stage, Upsample, group_norm, zero
from difflab.nn.embedding import ORDERS, NoiseEmbedding


@dataclass(frozen=True)
class UNetConfig:
    """Shape of the U-Net; level l works at resolution size / 2^l with width base * mult[l]."""

    in_channels: int = 1  # image channels (1 grey, 3 RGB)
    base_channels: int = 32  # width of the first level
    channel_mult: tuple[int, ...] = (1, 2, 2)  # width multiplier per level
    num_res_blocks: int = 1  # ResNet blocks per level (down path; the up path has one more)
    attention_levels: tuple[int, ...] = (2,)  # levels with self-attention after each ResNet block
    cross_attention_levels: Optional[tuple[int, ...]] = None  # text models: levels with cross-attention to the
    # caption (unset: the attention levels); it is cheap where self-attention is not (few keys)
    heads: int = 1  # attention heads
    head_dim: int = 0  # > 0: channels per attention head, so a level of width c has c / head_dim heads (diffusers' attention_head_dim); 0: unet.heads at every level
    groups: int = 32  # GroupNorm groups (a width they do not divide takes the largest power of two that does)
    norm_eps: float = 1e-5  # GroupNorm epsilon
    time_order: str = "cos_sin"  # sinusoidal noise features: cos_sin or sin_cos first (diffusers' flip_sin_to_cos true / false)
    freq_shift: float = 0.0  # sinusoidal frequencies max_period^(-k / (half - freq_shift)) (diffusers' freq_shift)
    dropout: float = 0.0  # dropout inside ResNet blocks
    scale_shift: bool = True  # time embedding as scale-shift of the GroupNorm (else added)
    num_classes: int = 0  # > 0 adds a class embedding (cond = labels)
    lowres_factor: int = 0  # > 0: super-resolution, conditioned on the image average-pooled by this factor
    # (condition 'lowres', upsampled to full size and concatenated to the input; null = zeros)
    channels_last: bool = False  # convolutions channels-last: 1.13x evaluation at base 64 on CPU, slower for narrow nets

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        if self.cross_attention_levels is not None:
            object.__setattr__(self, "cross_attention_levels", tuple(self.cross_attention_levels))
        if self.in_channels < 1:
            raise UserError(f"unet.in_channels must be positive (1 grey, 3 RGB, a latent's channels), got {self.in_channels}")
        if self.base_channels < 1 or not self.channel_mult or min(self.channel_mult) < 1:
            raise UserError("unet.base_channels must be positive and unet.channel_mult a non-empty list of "
                            "positive multipliers, e.g. [1, 2, 2]")
        if self.num_res_blocks < 1:
            raise UserError(f"unet.num_res_blocks must be at least 1, got {self.num_res_blocks}")
        bad = [lv for lv in self.attention_levels + (self.cross_attention_levels or ())
               if not 0 <= lv < len(self.channel_mult)]
        if bad:
            raise UserError(f"unet.attention_levels {bad} out of range 0..{len(self.channel_mult) - 1} for "
                            f"{len(self.channel_mult)} levels: set unet.attention_levels, e.g. "
                            f"[{len(self.channel_mult) - 1}] or []")
        if not 0 <= self.dropout < 1:
            raise UserError(f"unet.dropout must be in [0, 1), got {self.dropout}")
        widths = [self.base_channels * m for m in self.channel_mult]
        if self.heads < 1 or any(w % self.heads for w in widths):
            raise UserError(f"unet.heads={self.heads} must divide every level's width {widths}: choose a divisor")
        attended = sorted({widths[lv] for lv in self.attention_levels + (self.cross_attention_levels or ())} |
                          {widths[-1]})  # the middle block attends at the last level's width
        if self.head_dim < 0 or (self.head_dim and any(w % self.head_dim for w in attended)):
            raise UserError(f"unet.head_dim={self.head_dim} must be 0 (unet.heads heads) or divide the width of every "
                            f"level with attention {attended}")
        if self.groups < 1 or not self.norm_eps > 0:
            raise UserError(f"unet.groups must be positive and unet.norm_eps > 0, got {self.groups}, {self.norm_eps}")
        if self.time_order not in ORDERS:
            raise UserError(f"unet.time_order must be one of {ORDERS}, got {self.time_order!r}")
        if self.num_classes < 0:
            raise UserError(f"unet.num_classes must be >= 0, got {self.num_classes}")
        if self.lowres_factor < 0 or self.lowres_factor == 1:
            raise UserError(f"unet.lowres_factor must be 0 (off) or a downsampling factor >= 2, got {self.lowres_factor}")

    def heads_at(self, channels: int) -> int:
        """Attention heads at a level of this width."""
        return channels // self.head_dim if self.head_dim else self.heads

    @property
    def norm(self) -> Callable[[int], nn.Module]:
        """The GroupNorm of every block: (channels) -> module."""
        return partial(group_norm, groups=self.groups, eps=self.norm_eps)

    @property
    def factor(self) -> int:
        """Image sides must be divisible by this (one halving between consecutive levels)."""
        return 2 ** (len(self.channel_mult) - 1)


class UNet(nn.Module):
    """Denoising network: net(c_in x (B, C, H, W), c_noise (B,), cond: Condition or None) -> F (B, k C, H, W).

    k = out_mult is 2 when the network also predicts the reverse variance. The condition kinds say where each field
    goes in: 'embedding' kinds into the noise embedding, a 'context' kind (a caption's encoder) to cross-attention at
    the cross-attention levels and in the middle, 'concat' kinds to the input channels.
    """

    def __init__(self, cfg: UNetConfig, out_mult: int = 1, kinds: Sequence[ConditionKind] = ()):
        super().__init__()
        self.cfg, self.kinds = cfg, tuple(k for k in kinds if k.inject != "target")
        ch, emb_dim = cfg.base_channels, 4 * cfg.base_channels
        norm = cfg.norm
        block = lambda a, b: ResBlock(a, b, emb_dim, cfg.dropout, cfg.scale_shift, norm)  # noqa: E731
        self.embed = NoiseEmbedding(ch, emb_dim, self.kinds, cfg.time_order, cfg.freq_shift)
        context = [k for k in self.kinds if k.inject == "context"]
        if len(context) > 1:
            raise UserError(f"one cross-attention context per network, got {[k.name for k in context]}")
        self.context_kind = context[0] if context else None
        if self.context_kind is not None:  # kept under the kind's own name (a caption's encoder: self.text)
            self.add_module(self.context_kind.module_name, self.context_kind.module(emb_dim))
        self.concat = tuple(k for k in self.kinds if k.inject == "concat")
        extra = sum(k.channels(cfg.in_channels) for k in self.concat)
        self.conv_in = nn.Conv2d(cfg.in_channels + extra, ch, 3, padding=1)
        self.down, skips, c = nn.ModuleList(), [ch], ch
        for lv, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                self.down.append(self._stage(block(c, ch * mult), ch * mult, lv, takes_skip=False))
                c = ch * mult
                skips.append(c)
            if lv < len(cfg.channel_mult) - 1:
                self.down.append(Downsample(c))
                skips.append(c)
        self.mid = nn.ModuleList([block(c, c), SelfAttention(c, cfg.heads_at(c), norm), block(c, c)])
        if self.context is not None:
            self.mid_cross = CrossAttention(c, self.context.width, cfg.heads_at(c), norm)
        self.up = nn.ModuleList()
        for lv, mult in reversed(list(enumerate(cfg.channel_mult))):
            for j in range(cfg.num_res_blocks + 1):
                self.up.append(self._stage(block(c + skips.pop(), ch * mult), ch * mult, lv, takes_skip=True))
                c = ch * mult
            if lv > 0:
                self.up.append(Upsample(c))
        self.out = nn.Sequential(norm(c), nn.SiLU(), zero(nn.Conv2d(c, out_mult * cfg.in_channels, 3, padding=1)))
        self.layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.to(memory_format=self.layout)  # docs/benchmarks.md: wide networks gain, the demo's narrow one loses

    @property
    def context(self) -> nn.Module | None:
        """The context kind's module ((B, L) -> (B, L, width)), or None."""
        return getattr(self, self.context_kind.module_name) if self.context_kind is not None else None

    @property
    def cross_levels(self) -> tuple[int, ...]:
        """Levels with cross-attention to the context (none without a context kind)."""
        if self.context_kind is None:
            return ()
        return self.cfg.attention_levels if self.cfg.cross_attention_levels is None else self.cfg.cross_attention_levels

    def _stage(self, res: ResBlock, c: int, level: int, takes_skip: bool) -> Stage:
        heads, norm = self.cfg.heads_at(c), self.cfg.norm
        attn = SelfAttention(c, heads, norm) if level in self.cfg.attention_levels else None
        cross = CrossAttention(c, self.context.width, heads, norm) if level in self.cross_levels else None
        return Stage(res, attn, takes_skip, cross)

    @property
    def conditions(self) -> tuple[str, ...]:
        """The condition fields the network takes, one per condition kind."""
        return tuple(k.field for k in self.kinds)

    def _field(self, kind: ConditionKind, cond: Condition | None, like: Tensor, shape: tuple[int, ...]) -> Tensor:
        """The batch's values of a kind's field, or its null value on every row (the unconditional model)."""
        if cond is not None and kind.field in cond.fields:
            return cond[kind.field].to(like.device)
        null = kind.null(shape).to(like.device)
        return null.expand(len(like), *null.shape)

    def lowres_input(self, x: Tensor, cond: Condition | None) -> Tensor:
        """[x, each 'concat' kind's image] along channels (their null values where the condition is absent)."""
        if not self.concat:
            return x
        return torch.cat([x] + [self._field(k, cond, x, tuple(x.shape[1:])).to(x) for k in self.concat], dim=1)

    def _context(self, cond: Condition | None, batch: int, device: torch.device) -> Tensor | None:
        """The context's features (B, L, width), or None without a context kind. (No pooled caption feature is
        added to the noise embedding: it would say which digits without where, and the network learns the
        order-blind shortcut first.)"""
        if self.context_kind is None:
            return None
        return self.context(self._field(self.context_kind, cond, torch.empty(batch, device=device), ()))

    def check_input(self, x: Tensor) -> None:
        """Raise UserError when images do not fit this network."""
        f = self.cfg.factor
        if x.ndim != 4 or x.shape[1] != self.cfg.in_channels:
            fix = (f"--set unet.in_channels={x.shape[1]} (or --set data.channels={self.cfg.in_channels} to convert "
                   "the images)") if x.ndim == 4 and x.shape[1] in (1, 3) else \
                "--set arch=mlp for points" if x.ndim == 2 else "--set data.channels=1|3 to convert the images"
            raise UserError(f"the model takes (B, {self.cfg.in_channels}, H, W) images, got shape {tuple(x.shape)}: "
                            f"{fix}")
        if x.shape[2] % f or x.shape[3] % f:
            raise UserError(f"image size {x.shape[2]}x{x.shape[3]} is not divisible by {f} = 2^(levels-1): "
                            "set data.image_size to a multiple of it or use fewer unet.channel_mult levels")

    def forward(self, x: Tensor, noise_level: Tensor, cond: Condition | None = None) -> Tensor:
        emb = self.embed(noise_level, cond)  # (B, 4 base)
        context = self._context(cond, x.shape[0], x.device)
        h = self.conv_in(self.lowres_input(x, cond).contiguous(memory_format=self.layout))  # (B, base, H, W)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb, context)
            hs.append(h)
        h = self.mid[1](self.mid[0](h, emb))
        h = self.mid[2](self.mid_cross(h, context) if context is not None else h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], dim=1), emb, context) if layer.takes_skip else layer(h, emb, context)
        return self.out(h)
