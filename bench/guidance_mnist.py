"""Guidance on MNIST, judged by an independent classifier (the judge: trained separately, never used for guidance):
the share of samples read as the asked class, and a diversity measure beside it (the mean pairwise distance of the
judge's features within a class), against the guidance scale, for classifier-free guidance of a class-conditional
run (trained with condition dropout) and classifier guidance of an unconditional run with a noise-conditional
classifier. Also writes a scale x class grid for each.

  .venv/bin/python bench/guidance_mnist.py --minutes 8            # trains 3 runs (8 + 8 + 4 min), then samples
  .venv/bin/python bench/guidance_mnist.py --cond RUN --uncond RUN --classifier RUN   # reuse trained runs
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
from difflab.data.dataset import to_uint8  # noqa: E402
from difflab.demo import DEMO  # noqa: E402
from difflab.eval.features import mnist_extractor  # noqa: E402
from difflab.eval.grid import save_grid  # noqa: E402
from difflab.eval.judge import _predict_probs, load_or_train_judge  # noqa: E402
from mnist_recipes import cpu_flags  # noqa: E402

OUT = ROOT / "bench" / "out" / "guidance"


def train(name: str, minutes: float, sets: list[str], command: str = "train") -> Path:
    """A run of the demo recipe with `sets` on top, trained for `minutes` (skipped if it exists)."""
    run = OUT / name
    if (run / "checkpoint.safetensors").exists():
        return run
    OUT.mkdir(parents=True, exist_ok=True)
    recipe = OUT / f"{name}.yaml"
    recipe.write_text(dump_yaml(build_config(None, [], base=DEMO)))
    cmd = [sys.executable, "-m", "difflab", command, "--config", str(recipe), "--out", str(run), "--minutes",
           str(minutes), "--sample", "0", "--quiet"] + [a for s in sets for a in ("--set", s)]
    print(" ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    if subprocess.run(cmd, env=env).returncode != 0:
        raise SystemExit(f"training {name} failed")
    return run


def diversity(feats: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance of feature rows."""
    d = torch.cdist(feats, feats)
    n = len(feats)
    return float(d.sum() / (n * (n - 1)))


def measure(pipe, scales, per_class: int, nfe: int, classifier: Path | None, judge, feats, tag: str) -> list[dict]:
    rows, grid_rows = [], []
    classes = tuple(range(10))
    for scale in scales:
        t0 = time.perf_counter()
        x = pipe.sample(10 * per_class, nfe=nfe, seed=0, classes=classes, guidance=float(scale),
                        classifier=classifier, batch_size=250)
        secs = time.perf_counter() - t0
        imgs = to_uint8(x)[:, 0]
        asked = np.arange(len(imgs)) % 10
        acc = float((_predict_probs(judge, imgs).argmax(1).numpy() == asked).mean())
        f = feats(imgs)
        div = float(np.mean([diversity(f[torch.from_numpy(asked == c)]) for c in classes]))
        rows.append({"guidance": tag, "scale": scale, "accuracy": round(acc, 3), "diversity": round(div, 3),
                     "n": len(imgs), "seconds": round(secs, 1)})
        print(json.dumps(rows[-1]), flush=True)
        grid_rows.append(x[:10])
    save_grid(torch.cat(grid_rows), OUT / f"grid_{tag}.png", nrow=10)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=8.0, help="training minutes of each diffusion run")
    ap.add_argument("--cond", type=Path, help="reuse this class-conditional run (trained with cond_dropout > 0)")
    ap.add_argument("--uncond", type=Path, help="reuse this unconditional run")
    ap.add_argument("--classifier", type=Path, help="reuse this noise-conditional classifier run")
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--nfe", type=int, default=20)
    ap.add_argument("--scales", default="0,1,2,4")
    args = ap.parse_args()
    print(f"machine: {cpu_flags()}", flush=True)
    scales = [float(s) for s in args.scales.split(",")]
    cond = args.cond or train("cond", args.minutes, ["unet.num_classes=10", "train.cond_dropout=0.1"])
    uncond = args.uncond or train("uncond", args.minutes, [])
    clf = args.classifier or train("classifier", args.minutes / 2, ["classifier.in_channels=1"], "train-classifier")
    judge, ext = load_or_train_judge(log=lambda s: None), mnist_extractor()
    feats = lambda imgs: ext(imgs)  # noqa: E731
    rows = measure(difflab.load(cond), scales, args.per_class, args.nfe, None, judge, feats, "classifier-free")
    rows += measure(difflab.load(uncond), scales, args.per_class, args.nfe, clf, judge, feats, "classifier")
    (OUT / "guidance.json").write_text(json.dumps({"machine": cpu_flags(), "nfe": args.nfe, "rows": rows}, indent=1))
    print("| guidance | scale | judged accuracy of the asked class | diversity (judge features) | samples |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['guidance']} | {r['scale']:g} | {r['accuracy']:.3f} | {r['diversity']:.3f} | {r['n']} |")


if __name__ == "__main__":
    main()
