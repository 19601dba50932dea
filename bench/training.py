"""What bf16 autocast and torch.compile buy when training the demo's U-Net, and whether bf16 reaches fp32's loss.

Every variant trains the demo config (MNIST, 16-32-64 U-Net, v-prediction, batch 64) on the same images, t and
eps, step for step; then its live network is scored in float32 on 1024 MNIST test images with fixed t and eps.
Run: OMP_NUM_THREADS=2 .venv/bin/python bench/training.py --images 38400
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing difflab

from difflab.config import build_config  # noqa: E402
from difflab.data.build import build_dataset  # noqa: E402
from difflab.demo import DEMO  # noqa: E402
from difflab.losses.objective import training_times  # noqa: E402
from difflab.losses.simple import simple_loss  # noqa: E402
from difflab.train.build import build_denoiser  # noqa: E402
from difflab.train.loop import train  # noqa: E402
from difflab.train.run import load_run  # noqa: E402

VARIANTS = {"fp32": {}, "bf16": {"precision": "bf16"}, "fp32+compile": {"compile": True},
            "bf16+compile": {"precision": "bf16", "compile": True}}


@torch.no_grad()
def held_out_loss(run, n: int = 1024) -> float:
    """The training loss of the live network in float32 on n test images, t and eps fixed by seed 0."""
    test = build_dataset(replace(run.cfg.data, split="test", limit=n))
    den = build_denoiser(run.cfg, run.net.eval())
    g = torch.Generator().manual_seed(0)
    t = training_times(den.schedule, torch.rand(len(test), generator=g, dtype=torch.float64), integer_steps=True)
    eps = torch.randn(test.x.shape, generator=g)
    return float(simple_loss(den, test.x, t, eps).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=38400, help="training images per variant (default 600 steps)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "training"))
    args = ap.parse_args()
    rows = []
    for name in args.variants:
        train_cfg = {**DEMO["train"], "minutes": 0, "max_images": args.images, "log_every": 10,
                     "checkpoint_every_images": 10**9, "tensorboard": False, **VARIANTS[name]}
        cfg = build_config(base={**DEMO, "train": train_cfg})
        data = build_dataset(cfg.data)
        out = Path(args.out) / name
        t0 = time.time()
        res = train(cfg, data, out, overwrite=True, log=lambda s: None, progress=False)
        wall = time.time() - t0
        lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
        first = [r for r in lines if r["step"] >= 50][:1]  # compile happens in the first steps: rate after them
        rate = (res.steps - first[0]["step"]) / (res.seconds - first[0]["seconds"]) if first else res.steps / wall
        tail = [r["loss"] for r in lines[-20:]]
        row = {"variant": name, "steps": res.steps, "wall_s": round(wall, 1), "steps_per_s": round(rate, 3),
               "train_loss_tail": round(sum(tail) / len(tail), 4), "held_out_loss": round(held_out_loss(load_run(out)), 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = next((r for r in rows if r["variant"] == "fp32"), rows[0])
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.images} images per variant")
    print("| variant | steps/s | speed vs fp32 | train loss (last 200 steps) | held-out loss (fp32 eval) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['steps_per_s']:.2f} | {r['steps_per_s'] / base['steps_per_s']:.2f}x | "
              f"{r['train_loss_tail']:.4f} | {r['held_out_loss']:.4f} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
