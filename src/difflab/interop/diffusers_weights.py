"""UNet2DModel weights <-> difflab U-Net weights, module by module (to_q, to_k, to_v <-> one qkv convolution), and the
time table that lets diffusers' integer timesteps call a difflab network trained on t_VP(sigma~)."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from difflab.config import RunConfig
from difflab.errors import UserError
from difflab.nn.embedding import sinusoidal
from difflab.nn.unet import UNetConfig

RESNET = (("norm1", "norm1"), ("conv1", "conv1"), ("emb", "time_emb_proj"), ("norm2", "norm2"), ("conv2", "conv2"),
          ("skip", "conv_shortcut"))
ATTENTION = (("norm", "group_norm"), ("proj", "to_out.0"))  # plus qkv <-> to_q, to_k, to_v


def module_pairs(cfg: UNetConfig) -> Iterator[tuple[str, str, str]]:
    """(difflab prefix, diffusers prefix, kind) of every mapped module; kind: same, resnet or attention."""
    levels, n = len(cfg.channel_mult), cfg.num_res_blocks
    yield from (("conv_in", "conv_in", "same"), ("embed.mlp.0", "time_embedding.linear_1", "same"),
                ("embed.mlp.2", "time_embedding.linear_2", "same"))
    k = 0
    for lv in range(levels):
        for j in range(n):
            yield f"down.{k}.res", f"down_blocks.{lv}.resnets.{j}", "resnet"
            if lv in cfg.attention_levels:
                yield f"down.{k}.attn", f"down_blocks.{lv}.attentions.{j}", "attention"
            k += 1
        if lv < levels - 1:
            yield f"down.{k}.conv", f"down_blocks.{lv}.downsamplers.0.conv", "same"
            k += 1
    yield from (("mid.0", "mid_block.resnets.0", "resnet"), ("mid.1", "mid_block.attentions.0", "attention"),
                ("mid.2", "mid_block.resnets.1", "resnet"))
    k = 0
    for b, lv in enumerate(reversed(range(levels))):
        for j in range(n + 1):
            yield f"up.{k}.res", f"up_blocks.{b}.resnets.{j}", "resnet"
            if lv in cfg.attention_levels:
                yield f"up.{k}.attn", f"up_blocks.{b}.attentions.{j}", "attention"
            k += 1
        if lv > 0:
            yield f"up.{k}.conv", f"up_blocks.{b}.upsamplers.0.conv", "same"
            k += 1
    yield from (("out.0", "conv_norm_out", "same"), ("out.2", "conv_out", "same"))


def _leaves(kind: str) -> tuple[tuple[str, str], ...]:
    return {"same": (("", ""),), "resnet": RESNET, "attention": ATTENTION}[kind]


def to_difflab(state: dict[str, Tensor], cfg: UNetConfig, classes: int, where: str) -> dict[str, Tensor]:
    """A UNet2DModel state dict as difflab's U-Net's (the class table gets difflab's null row: zeros for a model
    that has none, i.e. classes == num_class_embeds)."""
    out, used = {}, set()

    def take(key: str) -> Tensor:
        if key not in state:
            raise UserError(f"{where}: the weights lack {key}; the file does not match unet/config.json")
        used.add(key)
        return state[key]

    for ours, theirs, kind in module_pairs(cfg):
        for a, b in _leaves(kind):
            src = f"{theirs}.{b}".strip(".")
            for p in ("weight", "bias"):
                if a == "skip" and f"{src}.{p}" not in state:
                    continue
                v = take(f"{src}.{p}")
                out[f"{ours}.{a}.{p}".replace("..", ".").strip(".")] = v[..., None, None] if kind == "attention" \
                    and a == "proj" and p == "weight" else v
        if kind == "attention":
            for p in ("weight", "bias"):
                qkv = torch.cat([take(f"{theirs}.to_{n}.{p}") for n in "qkv"])
                out[f"{ours}.qkv.{p}"] = qkv[..., None, None] if p == "weight" else qkv
    if cfg.num_classes:
        table = take("class_embedding.weight")  # (num_class_embeds, dim)
        extra = cfg.num_classes + 1 - len(table)
        out["embed.classes.weight"] = torch.cat([table, table.new_zeros(extra, table.shape[1])]) if extra else table
    left = sorted(set(state) - used - {"time_proj.weight"})
    if left:
        raise UserError(f"{where}: the weights hold {left[0]}, which unet/config.json does not account for")
    return out


def to_diffusers(state: dict[str, Tensor], cfg: UNetConfig) -> dict[str, Tensor]:
    """difflab's U-Net state dict as a UNet2DModel's (the class table keeps its null row as the last class)."""
    out = {}
    for ours, theirs, kind in module_pairs(cfg):
        for a, b in _leaves(kind):
            for p in ("weight", "bias"):
                key = f"{ours}.{a}.{p}".replace("..", ".").strip(".")
                if key in state:
                    v = state[key]
                    out[f"{theirs}.{b}.{p}".replace("..", ".").strip(".")] = \
                        v.flatten(1) if kind == "attention" and a == "proj" and p == "weight" else v
        if kind == "attention":
            for p in ("weight", "bias"):
                qkv = state[f"{ours}.qkv.{p}"]
                for n, v in zip("qkv", qkv.chunk(3)):
                    out[f"{theirs}.to_{n}.{p}"] = v.flatten(1) if p == "weight" else v
    if cfg.num_classes:
        out["class_embedding.weight"] = state["embed.classes.weight"]
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}



def time_table(cfg: RunConfig, denoiser) -> Tensor:
    """(T, base) the sinusoidal features difflab's network sees at diffusers' timestep t = i - 1, i = 1..T."""
    sched = denoiser.schedule
    i = torch.arange(1, cfg.schedule.T + 1, dtype=torch.float64)
    s = torch.exp(-0.5 * sched.log_snr(sched.time(i)))  # sigma~ at step i
    u = cfg.unet
    return sinusoidal(denoiser.noise_input(s), u.base_channels, order=u.time_order, freq_shift=u.freq_shift)
