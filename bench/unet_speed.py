"""difflab's U-Net against diffusers' UNet2DModel at one architecture, interleaved in one process: images/s of a
training step (forward, backward, AdamW) and of an evaluation, achieved GFLOP/s against the machine's measured
convolution and matmul rates, parameter counts side by side, the CPU's flags.

Architecture (both): 32 x 32 x 3 images, base 64 channels, multipliers (1, 2, 2), 2 ResNet blocks per level,
self-attention at 16 x 16 and in the middle, batch 64, fp32 (and bf16 autocast where the CPU has native bf16).

  OMP_NUM_THREADS=2 .venv/bin/python bench/unet_speed.py --rounds 6
  OMP_NUM_THREADS=2 .venv/bin/python bench/unet_speed.py --rounds 6 --precision bf16   # native bf16 CPUs only
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from difflab.nn.unet import UNet, UNetConfig  # noqa: E402
from mnist_recipes import cpu_flags  # noqa: E402

B, RES, C = 64, 32, 3
CHANNELS_LAST = True


def difflab_net() -> torch.nn.Module:
    net = UNet(UNetConfig(in_channels=C, base_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2,
                          attention_levels=(1,), channels_last=CHANNELS_LAST))
    return _Wrap(lambda x, t: net(x, t), net)


def diffusers_net() -> torch.nn.Module:
    from diffusers import UNet2DModel

    net = UNet2DModel(sample_size=RES, in_channels=C, out_channels=C, block_out_channels=(64, 128, 128),
                      layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), attention_head_dim=None)
    return _Wrap(lambda x, t: net(x, t * 1000).sample, net)


class _Wrap(torch.nn.Module):
    def __init__(self, fn, net):
        super().__init__()
        self.fn, self.net = fn, net

    def forward(self, x, t):
        return self.fn(x, t)


def flops(net, x, t) -> float:
    with FlopCounterMode(display=False) as fc:
        net(x, t)
    return fc.get_total_flops()


def machine_rates(dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """GFLOP/s of a large 3x3 convolution and of a large matmul on this machine at `dtype`."""
    x, w = torch.randn(32, 128, 32, 32, dtype=dtype), torch.randn(128, 128, 3, 3, dtype=dtype)
    conv = 2 * 32 * 128 * 32 * 32 * 128 * 9
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    out = {}
    for name, fn, n in (("conv", lambda: F.conv2d(x, w, padding=1), conv), ("matmul", lambda: a @ b, 2 * 2048 ** 3)):
        fn()
        t0 = time.perf_counter()
        for _ in range(5):
            fn()
        out[name] = n * 5 / (time.perf_counter() - t0) / 1e9
    return out


def timed(fn, reps: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: both under autocast")
    ap.add_argument("--channels-last", choices=["on", "off"], default="on", help="difflab's unet.channels_last")
    ap.add_argument("--out", default="bench/out/unet_speed.json")
    args = ap.parse_args()
    from difflab.train.precision import native_bf16_cpu

    if args.precision == "bf16" and not native_bf16_cpu():
        raise SystemExit("bf16 needs a CPU with native bf16 (AVX-512 BF16 or AMX): this one would fall back to "
                         "kernels ~100x slower")
    global CHANNELS_LAST
    CHANNELS_LAST = args.channels_last == "on"
    bf16 = args.precision == "bf16"
    torch.manual_seed(0)
    nets = {"difflab": difflab_net(), "diffusers": diffusers_net()}
    x, t, target = torch.randn(B, C, RES, RES), torch.rand(B), torch.randn(B, C, RES, RES)
    opts = {k: torch.optim.AdamW(n.parameters(), lr=1e-4) for k, n in nets.items()}
    info = {"machine": cpu_flags(), "threads": torch.get_num_threads(),
            "rates": machine_rates(torch.bfloat16 if bf16 else torch.float32),
            "precision": args.precision, "channels_last": CHANNELS_LAST}
    print(f"machine: {info['machine']}, {info['threads']} threads; measured {args.precision} conv "
          f"{info['rates']['conv']:.0f}, "
          f"matmul {info['rates']['matmul']:.0f} GFLOP/s")
    rows = {k: {"params": sum(p.numel() for p in n.parameters()), "flops": flops(n, x, t), "train": [], "eval": []}
            for k, n in nets.items()}

    def train_step(k):
        opts[k].zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = nets[k](x, t)
        F.mse_loss(out.float(), target).backward()
        opts[k].step()

    def eval_step(k):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            nets[k](x, t)

    for r in range(args.rounds):  # interleaved: both see the same machine state
        for k in nets:
            rows[k]["train"].append(timed(lambda: train_step(k), 1))
            rows[k]["eval"].append(timed(lambda: eval_step(k), 1))
    for k, row in rows.items():
        tr, ev = sorted(row["train"])[len(row["train"]) // 2], sorted(row["eval"])[len(row["eval"]) // 2]
        row.update(train_img_s=B / tr, eval_img_s=B / ev, eval_gflops=row["flops"] / ev / 1e9,
                   train_gflops=3 * row["flops"] / tr / 1e9)
        print(f"{k:>9}: {row['params']:,} parameters, {row['flops'] / B / 1e9:.2f} GFLOP/image forward; train "
              f"{row['train_img_s']:.1f} img/s ({row['train_gflops']:.0f} GFLOP/s), eval {row['eval_img_s']:.1f} img/s "
              f"({row['eval_gflops']:.0f} GFLOP/s)")
    d, p = rows["difflab"], rows["diffusers"]
    print(f"difflab / diffusers: train {d['train_img_s'] / p['train_img_s']:.2f}x, eval "
          f"{d['eval_img_s'] / p['eval_img_s']:.2f}x (median of {args.rounds} interleaved rounds, {args.precision})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**info, "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
