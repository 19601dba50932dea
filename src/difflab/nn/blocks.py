"""U-Net building blocks: ResNet block with time embedding, self-attention, resampling."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

POSITION_BANDS = 4  # frequencies of the pixel coordinates cross-attention queries see


def group_norm(channels: int, groups: int = 32, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with `groups` groups if they divide the channel count, else the largest power of two below that
    does."""
    g = next(g for g in (groups, 32, 16, 8, 4, 2, 1) if g <= groups and channels % g == 0)
    return nn.GroupNorm(g, channels, eps=eps)


def zero(module: nn.Module) -> nn.Module:
    """Zero-initialise a layer so a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GN -> SiLU -> conv -> (+ temb, or scale-shift) -> GN -> SiLU -> dropout -> conv, plus a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0, scale_shift: bool = True,
                 norm: Callable[[int], nn.Module] = group_norm):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1, self.conv1 = norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out if scale_shift else c_out)
        self.norm2, self.drop = norm(c_out), nn.Dropout(dropout)
        self.conv2 = zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, c_out, H, W)
        e = self.emb(F.silu(emb))[:, :, None, None]  # (B, c_out or 2 c_out, 1, 1)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions (scaled_dot_product_attention), residual."""

    def __init__(self, channels: int, heads: int = 1, norm: Callable[[int], nn.Module] = group_norm):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention channels {channels} not divisible by heads {heads}")
        self.heads = heads
        self.norm = norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C): positions as tokens
        # the 1x1 convolutions as matmuls on tokens (same weights), so q, k, v come out with a contiguous last
        # dimension and scaled_dot_product_attention takes its fused kernel instead of a (HW x HW) matrix
        qkv = F.linear(h, self.qkv.weight.flatten(1), self.qkv.bias)  # (B, HW, 3C)
        q, k, v = qkv.view(B, H * W, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, HW, d)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, H * W, C)  # (B, HW, C)
        out = F.linear(a, self.proj.weight.flatten(1), self.proj.bias)  # (B, HW, C)
        return x + out.transpose(1, 2).reshape(B, C, H, W)


def position_features(H: int, W: int, device: torch.device, bands: int = 4) -> Tensor:
    """(H W, 4 bands) sin / cos of the row and column at frequencies pi 2^k over [-1, 1]: where a pixel is, the same
    features at every image size (convolutions alone see position only through the zero padding)."""
    r = torch.linspace(-1, 1, H, device=device)[:, None].expand(H, W)
    c = torch.linspace(-1, 1, W, device=device)[None, :].expand(H, W)
    f = math.pi * 2.0 ** torch.arange(bands, device=device)  # (bands,)
    args = torch.stack([r, c], -1).reshape(H * W, 2, 1) * f  # (HW, 2, bands)
    return torch.cat([torch.sin(args), torch.cos(args)], -1).reshape(H * W, 4 * bands)


class CrossAttention(nn.Module):
    """Multi-head attention from the H*W positions (queries) to context tokens (keys, values), residual:
    softmax(q k^T / sqrt(d)) v with q = W_q GN(x) + W_p pos, k, v = W_k c, W_v c (Rombach et al. 2022, Eq. 3), where
    pos are the pixel's coordinates (position_features), so a caption can say where ('on the left')."""

    def __init__(self, channels: int, context_dim: int, heads: int = 1, norm: Callable[[int], nn.Module] = group_norm):
        super().__init__()
        self.heads = heads
        self.norm = norm(channels)
        self.q = nn.Linear(channels, channels)
        self.q_pos = nn.Linear(4 * POSITION_BANDS, channels, bias=False)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj = zero(nn.Linear(channels, channels))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        B, C, H, W = x.shape
        L, d = context.shape[1], C // self.heads
        pos = self.q_pos(position_features(H, W, x.device, POSITION_BANDS).to(self.q_pos.weight.dtype))  # (HW, C)
        q = (self.q(self.norm(x).flatten(2).transpose(1, 2)) + pos).view(B, H * W, self.heads, d).transpose(1, 2)
        k, v = self.kv(context).view(B, L, 2, self.heads, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, L, d)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, H * W, C)  # (B, HW, C)
        return x + self.proj(a).transpose(1, 2).reshape(B, C, H, W)


class Stage(nn.Module):
    """A ResNet block, then optional self-attention and cross-attention to a context; in the up path it eats a skip
    connection."""

    def __init__(self, res: ResBlock, attn: SelfAttention | None, takes_skip: bool,
                 cross: CrossAttention | None = None):
        super().__init__()
        self.res, self.attn, self.cross, self.takes_skip = res, attn, cross, takes_skip

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.res(x, emb)
        h = self.attn(h) if self.attn is not None else h
        return self.cross(h, context) if self.cross is not None else h


class Downsample(nn.Module):
    """Strided 3x3 convolution: (B, C, H, W) -> (B, C, H/2, W/2)."""

    takes_skip = False

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    takes_skip = False

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
