"""Which sampler should `difflab sample` and `train` use when nobody says? Every candidate draws the same 256 noise
streams from one trained MNIST run through difflab.load, is scored by the judge, and timed in this one process
(times are ratios to ancestral within the run; the machine's CPU flags are printed).

  .venv/bin/python bench/default_sampler.py --run runs/demo
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import difflab  # noqa: E402
from difflab.data.dataset import to_uint8  # noqa: E402
from difflab.eval.judge import judge_samples, load_or_train_judge  # noqa: E402
from mnist_recipes import cpu_flags  # noqa: E402

CANDIDATES = [("ancestral", {"steps": 250}), ("ancestral", {"steps": 1000}), ("dpmpp_pc", {"nfe": 5}),
              ("dpmpp_pc", {"nfe": 10}), ("dpmpp_3m", {"nfe": 10}), ("dpmpp_3m", {"nfe": 20}),
              ("dpmpp_3m", {"nfe": 20, "grid": "logsnr"}), ("dpmpp_2m", {"nfe": 20}), ("dpmpp_3m", {"nfe": 50}),
              ("ddim", {"nfe": 50}), ("edm", {"nfe": 35}), ("edm", {"nfe": 10}), ("euler_maruyama", {"nfe": 10})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a trained MNIST run folder")
    ap.add_argument("--num", type=int, default=256)
    ap.add_argument("--out", default="bench/out/default_sampler.json")
    args = ap.parse_args()
    print(f"machine: {cpu_flags()}", flush=True)
    pipe, judge = difflab.load(args.run), load_or_train_judge(log=lambda s: None)
    rows = []
    for name, budget in CANDIDATES:
        t0 = time.perf_counter()
        x = pipe.sample(args.num, sampler=name, seed=0, batch_size=128, **budget)
        secs = time.perf_counter() - t0
        s = judge_samples(to_uint8(x)[:, 0], judge)
        rows.append({"sampler": name, **budget, "score": round(s.score, 3), "confident": round(s.confident_share, 3),
                     "seconds": round(secs, 1)})
        print(json.dumps(rows[-1]), flush=True)
    base = next(r["seconds"] for r in rows if r["sampler"] == "ancestral" and r.get("steps") == 1000)
    for r in rows:
        r["time_vs_ancestral_1000"] = round(r["seconds"] / base, 3)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": cpu_flags(), "run": args.run, "rows": rows}, indent=1))
    print("| sampler | budget | judge score | confident share | time vs ancestral 1000 |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        b = (f"{r['steps']} steps" if "steps" in r else f"{r['nfe']} NFE") + f", {r.get('grid', 'default')} grid"
        print(f"| {r['sampler']} | {b} | {r['score']:.3f} | {r['confident']:.3f} | {r['time_vs_ancestral_1000']:.3f} |")


if __name__ == "__main__":
    main()
