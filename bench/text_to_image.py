"""Text-to-image on the two-digit canvas (28 x 56: two MNIST digits side by side) with two text encoders on the same
training budget: the small word encoder trained jointly with the U-Net, and the frozen pretrained MiniLM sentence
encoder (text.encoder=minilm). Both train without ten held-out digit pairs; the independent MNIST classifier (the
judge: never used for training or guidance) reads each half of samples for prompts in phrasings never seen in
training, for the held-out digit pairs, and for the training phrasings and pairs.

  .venv/bin/python bench/text_to_image.py --images 230000    # trains both (skipped where a run exists), measures
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import difflab  # noqa: E402
from difflab.config import build_config, dump_yaml  # noqa: E402
from difflab.conditions.language import HELD_OUT_PAIRS, HELD_OUT_TEMPLATES, TRAIN_TEMPLATES, caption  # noqa: E402
from difflab.data.dataset import to_uint8  # noqa: E402
from difflab.data.mnist import load_mnist  # noqa: E402
from difflab.demo import DEMO  # noqa: E402
from difflab.eval.grid import save_grid  # noqa: E402
from difflab.eval.judge import _predict_probs, load_or_train_judge  # noqa: E402
from mnist_recipes import cpu_flags  # noqa: E402

OUT = ROOT / "bench" / "out" / "text_to_image"
# the demo's recipe (v-prediction, narrow U-Net) on the canvas without the held-out digit pairs: cross-attention at
# 14 x 28 and 7 x 14 (self-attention only at 7 x 14: at 14 x 28 it costs more than the rest of the step)
RECIPE = ["data.name=mnist_pairs", "data.heldout_pairs=true", "train.cond_dropout=0.1", "train.minutes=0",
          "unet.cross_attention_levels=[1,2]", "train.ema_half_life_images=null"]  # minutes=0: --images is the budget
CONTENDERS = {"word encoder (trained jointly)": ("word", "text.encoder=transformer"),
              "MiniLM (frozen, pretrained)": ("minilm", "text.encoder=minilm")}
TRAIN_PAIRS = tuple((a, b) for a in range(10) for b in range(10) if (a, b) not in HELD_OUT_PAIRS)
SETS = (("held-out wordings", HELD_OUT_TEMPLATES, TRAIN_PAIRS, 1),
        ("held-out digit pairs", TRAIN_TEMPLATES, HELD_OUT_PAIRS, 2),
        ("training wordings and pairs", TRAIN_TEMPLATES, TRAIN_PAIRS, 3))


def train(run: Path, flags: list[str], images: int) -> None:
    if (run / "checkpoint.safetensors").exists():
        return
    run.parent.mkdir(parents=True, exist_ok=True)
    recipe = run.parent / f"{run.name}.yaml"
    recipe.write_text(dump_yaml(build_config(None, flags, base=DEMO)))
    cmd = [sys.executable, "-m", "difflab", "train", "--config", str(recipe), "--out", str(run), "--max-images",
           str(images), "--sample", "0", "--quiet"]
    print(" ".join(cmd), flush=True)
    if subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT / "src"))).returncode != 0:
        raise SystemExit("training failed")


def prompts(templates, pairs, n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """n prompts: the digit pairs cycled, phrasings drawn from `templates` (the index of each prompt's returned)."""
    rng = np.random.default_rng(seed)
    left, right = (np.array([pairs[k % len(pairs)][j] for k in range(n)]) for j in (0, 1))
    which = rng.integers(len(templates), size=n)
    texts = [caption(int(a), int(b), templates[w], rng) for a, b, w in zip(left, right, which)]
    return texts, left, right, which


def judge_halves(judge, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The judge's reading of the left and right 28 x 28 halves of (N, 1, 28, 56) canvases."""
    imgs = to_uint8(x)[:, 0]  # (N, 28, 56)
    return (_predict_probs(judge, np.ascontiguousarray(imgs[:, :, :28])).argmax(1).numpy(),
            _predict_probs(judge, np.ascontiguousarray(imgs[:, :, 28:])).argmax(1).numpy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=230_000, help="training images of each contender (same budget)")
    ap.add_argument("--samples", type=int, default=400, help="samples per set")
    ap.add_argument("--scale", type=float, default=3.0, help="classifier-free guidance scale w")
    ap.add_argument("--nfe", type=int, default=20)
    args = ap.parse_args()
    runs = {name: OUT / short for name, (short, _) in CONTENDERS.items()}
    for name, (_, flag) in CONTENDERS.items():
        train(runs[name], RECIPE + [flag], args.images)
    judge = load_or_train_judge()
    real, labels = load_mnist("test")
    judge_acc = float(np.mean(_predict_probs(judge, real).argmax(1).numpy() == labels))
    rows, grid = [], []
    for name, run in runs.items():
        pipe = difflab.load(run)
        s = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])  # steps and training seconds, all of it
        for what, templates, pairs, seed in SETS:
            texts, left, right, which = prompts(templates, pairs, args.samples, seed)
            x = pipe.sample(args.samples, nfe=args.nfe, seed=0, prompts=texts, guidance=args.scale, batch_size=200)
            jl, jr = judge_halves(judge, x)
            rows.append({"encoder": name, "set": what, "both": round(float(np.mean((jl == left) & (jr == right))), 3),
                         "swapped": round(float(np.mean((jl == right) & (jr == left) & (left != right))), 3),
                         "n": args.samples, "steps": s["step"], "steps_per_s": round(s["step"] / s["seconds"], 2)})
            if templates is HELD_OUT_TEMPLATES:  # which phrasings fail: both digits right, or drawn swapped
                ok, swap = (jl == left) & (jr == right), (jl == right) & (jr == left) & (left != right)
                masks = {t: which == i for i, t in enumerate(templates)}
                rows[-1]["per_phrasing"] = {t: [round(float(ok[m].mean()), 2), round(float(swap[m].mean()), 2),
                                                int(m.sum())] for t, m in masks.items()}
            print(json.dumps(rows[-1]), flush=True)
            grid.append(x[:10])
    save_grid(torch.cat(grid), OUT / "grid.png", nrow=10)
    lines = [f"Each contender trained {args.images:,} images ({rows[0]['steps']:,} steps of 64), {args.nfe} NFE "
             f"(x2 with guidance), w = {args.scale:g}, {args.samples} samples a set; the MNIST judge reads each "
             f"28 x 28 half (its accuracy on the 10,000 real test digits: {judge_acc:.3f}). {cpu_flags()}.", "",
             "| text encoder | held-out wordings | held-out digit pairs | training wordings and pairs | train steps/s |",
             "|---|---:|---:|---:|---:|"]
    for name in runs:
        r = {row["set"]: row for row in rows if row["encoder"] == name}
        lines.append(f"| {name} | {r['held-out wordings']['both']:.3f} | {r['held-out digit pairs']['both']:.3f} | "
                     f"{r['training wordings and pairs']['both']:.3f} | {r['held-out wordings']['steps_per_s']:.2f} |")
    lines += ["", "Held-out wordings, phrasing by phrasing: both digits on the named sides / drawn swapped (n):", "",
              "| phrasing | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    per = {row["encoder"]: row["per_phrasing"] for row in rows if "per_phrasing" in row}
    for t in HELD_OUT_TEMPLATES:
        lines.append(f"| `{t}` | " + " | ".join(f"{per[n][t][0]:.2f} / {per[n][t][1]:.2f} ({per[n][t][2]})"
                                                  for n in runs) + " |")
    lines += ["", "grid.png: rows = (encoder, set) in the order above; columns = the first 10 prompts of each set"]
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    (OUT / "results.json").write_text(json.dumps({"judge_accuracy": judge_acc, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
