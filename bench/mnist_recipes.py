"""MNIST recipes side by side at the same wall-clock: each contender trains concurrently with one thread (so both see
the same machine load), then is sampled and scored by the judge and by the probability-flow likelihood.

Contenders are named `label=REV:SETTINGS`: REV is `.` (this working tree) or a git revision (checked out into a
temporary worktree, run from its own source), SETTINGS comma-separated `--set` overrides of the demo config.

  # this tree's demo against the demo of the previous commit (is the new contract as good?)
  .venv/bin/python bench/mnist_recipes.py --minutes 8 demo_now=. demo_before=HEAD~1
  # EDM preconditioning + loss weighting against eps-prediction with Algorithm 1's loss
  .venv/bin/python bench/mnist_recipes.py --minutes 6 --bpd 64 --cosine \\
      eps=.:train.parameterization=eps edm=.:train.parameterization=edm,train.objective=edm
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from difflab.eval.judge import judge_samples, load_or_train_judge  # noqa: E402


def cpu_flags() -> str:
    """The CPU model and whether it has native bf16 / AVX-512 (figures from different machines never mix)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), platform.processor())
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    capped = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if os.environ.get(k)}
    emulated = f"; kernels capped by {', '.join(f'{k}={v}' for k, v in capped.items())}" if capped else ""
    return (f"{model}; avx512f={'avx512f' in flags}, avx512_bf16={'avx512_bf16' in flags}, "
            f"amx_bf16={'amx_bf16' in flags}{emulated}")


def source(rev: str, keep: list) -> Path:
    """The src/ folder of this tree ('.') or of a git revision in a temporary worktree."""
    if rev == ".":
        return ROOT / "src"
    tmp = tempfile.TemporaryDirectory(prefix="difflab-rev-")
    keep.append(tmp)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", tmp.name, rev], check=True,
                   capture_output=True)
    keep.append(lambda: subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tmp.name]))
    return Path(tmp.name) / "src"


def difflab(src: Path, *args: str, threads: int = 1) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(src)!r}); from difflab.cli.main import main; "
            "sys.exit(main(sys.argv[1:]))", *args, "--threads", str(threads)]


def env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("contenders", nargs="+", help="label=REV[:k=v,k=v]")
    ap.add_argument("--minutes", type=float, default=6.0, help="wall-clock training budget each (concurrent)")
    ap.add_argument("--samples", type=int, default=256, help="samples judged per contender")
    ap.add_argument("--sample-args", default="--sampler ancestral --steps 250", help="how samples are drawn")
    ap.add_argument("--bpd", type=int, default=0, help="test images for the probability-flow bits/dim (0: skip)")
    ap.add_argument("--cosine", action="store_true", help="also sample each run on the cosine table's grid")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "recipes")
    args = ap.parse_args()
    keep: list = []
    runs = []
    for c in args.contenders:
        label, spec = c.split("=", 1)
        rev, _, sets = spec.partition(":")
        runs.append((label, rev, source(rev, keep), [s for s in sets.split(",") if s]))
    load_or_train_judge(log=print)  # a cold judge cache trains here, before any timed section
    args.out.mkdir(parents=True, exist_ok=True)
    procs = []
    for label, rev, src, sets in runs:  # concurrent: the same machine load for every contender
        cmd = difflab(src, "demo", "--out", str(args.out / label), "--minutes", str(args.minutes),
                      *sum((["--set", s] for s in sets), []), "--set", "sample.num_samples=16", "--quiet")
        procs.append(subprocess.Popen(cmd, env=env(1)))
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a contender failed ({p.args[-8:]})")
    results = {"machine": cpu_flags(), "minutes": args.minutes, "sample_args": args.sample_args, "rows": []}
    threads = max(1, (os.cpu_count() or 1) // max(1, len(runs)))
    for label, rev, src, sets in runs:
        run = args.out / label
        metrics = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
        row = {"label": label, "rev": rev if rev == "." else subprocess.run(
                   ["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True).stdout.strip(),
               "settings": sets, "steps": metrics[-1]["step"], "images": metrics[-1]["images"]}
        grids = [("own", [])] + ([("cosine", ["--schedule", "cosine"])] if args.cosine else [])
        for name, extra in grids:
            t0 = time.time()
            subprocess.run(difflab(src, "sample", "--run", str(run), "--num", str(args.samples), "--name",
                                   f"judged_{name}", "--quiet", *args.sample_args.split(), *extra, threads=threads),
                           env=env(threads), check=True)
            with np.load(run / f"judged_{name}.npz") as z:
                score = judge_samples(z["images"])
            row[f"judge_{name}"] = {"score": round(score.score, 3), "confident": round(score.confident_share, 3),
                                    "balance_tv": round(score.balance_tv, 3), "n": score.n,
                                    "sample_s": round(time.time() - t0, 1)}
        if args.bpd:
            out = subprocess.run(difflab(src, "eval", "nll", "--checkpoint", str(run), "--method", "ode",
                                         "--num-images", str(args.bpd), "--rtol", "1e-4", "--quiet", threads=threads),
                                 env=env(threads), check=True, capture_output=True, text=True).stdout
            line = next(ln for ln in out.splitlines() if ln.startswith("bits/dim"))
            row["ode_bpd"] = line.split(None, 1)[1].strip()
        print(json.dumps(row))
        results["rows"].append(row)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"machine: {results['machine']}")
    for cleanup in reversed(keep):
        cleanup() if callable(cleanup) else cleanup.cleanup()


if __name__ == "__main__":
    main()
