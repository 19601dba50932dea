"""Text-to-image on the two-digit canvas (28 x 56: two MNIST digits side by side), judged by the independent MNIST
classifier (the judge: trained separately, never used for training or guidance) reading each half: the share of
samples whose left and right digits are the prompt's, for prompts in the held-out phrasings (never seen in training)
and, beside them, in the training phrasings, against the classifier-free guidance scale. Writes a prompt x scale grid.

  .venv/bin/python bench/text_to_image.py --minutes 40        # trains the run (skipped if it exists), then measures
  .venv/bin/python bench/text_to_image.py --run RUN           # measure a trained text-to-image run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import difflab  # noqa: E402
from difflab.config import build_config, dump_yaml  # noqa: E402
from difflab.conditions.language import HELD_OUT_TEMPLATES, TRAIN_TEMPLATES, caption  # noqa: E402
from difflab.data.dataset import to_uint8  # noqa: E402
from difflab.demo import DEMO  # noqa: E402
from difflab.eval.grid import save_grid  # noqa: E402
from difflab.eval.judge import _predict_probs, load_or_train_judge  # noqa: E402
from mnist_recipes import cpu_flags  # noqa: E402

OUT = ROOT / "bench" / "out" / "text_to_image"
# the demo's recipe (v-prediction, narrow U-Net) on the canvas, with a jointly trained text encoder: cross-attention
# at 14 x 28 and 7 x 14 (self-attention only at 7 x 14: at 14 x 28 it costs more than the rest of the step)
RECIPE = ["data.name=mnist_pairs", "text.encoder=transformer", "train.cond_dropout=0.1",
          "unet.cross_attention_levels=[1,2]", "train.ema_half_life_images=null"]


def train(run: Path, minutes: float) -> None:
    if (run / "checkpoint.safetensors").exists():
        return
    OUT.mkdir(parents=True, exist_ok=True)
    recipe = OUT / "recipe.yaml"
    recipe.write_text(dump_yaml(build_config(None, RECIPE, base=DEMO)))
    cmd = [sys.executable, "-m", "difflab", "train", "--config", str(recipe), "--out", str(run), "--minutes",
           str(minutes), "--sample", "0", "--quiet"]
    print(" ".join(cmd), flush=True)
    if subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT / "src"))).returncode != 0:
        raise SystemExit("training failed")


def prompts(templates, n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """n prompts: digit pairs cycling through all 100, phrasings drawn from `templates`."""
    rng = np.random.default_rng(seed)
    left, right = np.arange(n) % 10, (np.arange(n) // 10) % 10
    texts = [caption(int(a), int(b), templates[rng.integers(len(templates))], rng) for a, b in zip(left, right)]
    return texts, left, right


def judge_halves(judge, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The judge's reading of the left and right 28 x 28 halves of (N, 1, 28, 56) canvases."""
    imgs = to_uint8(x)[:, 0]  # (N, 28, 56)
    return (_predict_probs(judge, np.ascontiguousarray(imgs[:, :, :28])).argmax(1).numpy(),
            _predict_probs(judge, np.ascontiguousarray(imgs[:, :, 28:])).argmax(1).numpy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=OUT / "run")
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--samples", type=int, default=400, help="samples per (phrasing set, scale)")
    ap.add_argument("--scales", default="0,1,3")
    ap.add_argument("--nfe", type=int, default=20)
    args = ap.parse_args()
    train(args.run, args.minutes)
    pipe = difflab.load(args.run)
    judge = load_or_train_judge()
    summary = json.loads((args.run / "summary.json").read_text()) if (args.run / "summary.json").exists() else {}
    scales = [float(s) for s in args.scales.split(",")]
    rows, grid = [], []
    for name, templates, seed in (("held-out", HELD_OUT_TEMPLATES, 1), ("training", TRAIN_TEMPLATES, 2)):
        texts, left, right = prompts(templates, args.samples, seed)
        for scale in scales if name == "held-out" else [s for s in scales if s > 0]:  # w = 0 ignores the prompt
            t0 = time.perf_counter()
            x = pipe.sample(args.samples, nfe=args.nfe, seed=0, prompts=texts, guidance=scale, batch_size=250)
            secs = time.perf_counter() - t0
            jl, jr = judge_halves(judge, x)
            both = float(np.mean((jl == left) & (jr == right)))
            swapped = float(np.mean((jl == right) & (jr == left) & (left != right)))
            rows.append({"phrasings": name, "scale": scale, "both": round(both, 3),
                         "left": round(float(np.mean(jl == left)), 3), "right": round(float(np.mean(jr == right)), 3),
                         "swapped": round(swapped, 3), "n": args.samples, "seconds": round(secs, 1)})
            print(json.dumps(rows[-1]), flush=True)
            if name == "held-out":
                grid.append(x[:10])
    save_grid(torch.cat(grid), OUT / "grid.png", nrow=10)
    texts = prompts(HELD_OUT_TEMPLATES, 10, 1)[0]
    lines = [f"# Text-to-image on the two-digit canvas ({cpu_flags()})", "",
             f"run: {args.run}, {summary.get('steps', '?')} steps; {args.nfe} NFE per sample (x2 with guidance); "
             f"judge reads each half", "",
             "| phrasings | CFG scale w | both digits right | left right | right right | swapped | samples |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['phrasings']} | {r['scale']:g} | {r['both']:.3f} | {r['left']:.3f} | {r['right']:.3f} | "
              f"{r['swapped']:.3f} | {r['n']} |" for r in rows]
    lines += ["", f"grid.png: rows = scales {args.scales}; columns = held-out prompts: " + "; ".join(texts)]
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
