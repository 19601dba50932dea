"""Every sampler on its default grid at few NFE, against exact scores: the 2-D ring and the 64-D mixture with 10 modes
under the linear and cosine tables. Prints, per NFE:
  - each sampler's log-likelihood gap (nats) and sliced W2 (in units of the exact-sample floor) on its default grid;
  - the automatic choice's RMS distance to the exact probability-flow image against the best diffusers scheduler's;
  - per grid, the share of a deterministic sampler's samples that end in another mode than the exact flow's.

  OMP_NUM_THREADS=2 .venv/bin/python bench/default_grids.py            # ~10 min on 2 cores (diffusers: bench extras)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from difflab.eval import sampler_bench as sb  # noqa: E402
from difflab.samplers import SAMPLERS  # noqa: E402
from difflab.samplers.registry import auto_sampler  # noqa: E402
from mnist_recipes import cpu_flags  # noqa: E402

NFES = (5, 10, 20, 50)
LIMIT = 10.0  # nats: the largest log-likelihood gap a default may have at 5-20 NFE
FLIP_GRIDS = ("focus", "stable", "logsnr", "karras", "uniform")  # grids whose mode fidelity is stated
FLIP_SAMPLERS = ("ddim", "heun", "dpmpp_3m")


def modes(p: sb.Problem, x: torch.Tensor) -> torch.Tensor:
    return p.gmm._component_log_probs(x)[0].argmax(-1)


def flips(p: sb.Problem, x: torch.Tensor) -> float:
    """Share of samples whose most likely mode differs from that of the exact flow image of the same x_T."""
    return float((modes(p, x) != modes(p, p.flow)).double().mean()) if bool(torch.isfinite(x).all()) else math.nan


def run_default(p: sb.Problem, name: str, nfe: int, grid: str = "auto") -> dict:
    spec = SAMPLERS[name]
    times = spec.grid(grid, p.schedule, spec.steps_for_nfe(name, nfe))
    out = {}
    r = sb._run(p, f"{name}@{grid}", "difflab", not spec.stochastic,
                lambda den, noise: out.setdefault("x", spec.fn(den, p.x_T, p.schedule, times, noise=noise)))
    return {"problem": f"{p.name}/{p.schedule_name}", "sampler": name, "grid": spec.grid_for(p.schedule, len(times) - 1)
            if grid == "auto" else grid, "nfe": r.nfe, "nfe_asked": nfe, "ll_gap": r.ll_gap,
            "sw2": r.sw2 / p.floors["sw2"], "flow_rms": r.flow_rms,
            "flips": flips(p, out["x"]) if not spec.stochastic else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, nargs=2, default=(2000, 2000), help="points for the 2-D and 64-D mixture")
    ap.add_argument("--modes", type=int, default=10, help="components of the 64-D mixture")
    ap.add_argument("--out", default="bench/out/default_grids.json")
    args = ap.parse_args()
    print(f"machine: {cpu_flags()}", flush=True)
    sb.MIXTURES["64d"] = lambda: sb.mixture_64d(K=args.modes)
    cfg = sb.BenchConfig(samples=tuple(args.samples), nfes=(5, 10, 20))
    rows, peers, grids = [], [], []
    for mix in ("2d", "64d"):
        for sched in ("linear", "cosine"):
            p = sb.make_problem(mix, sched, args.samples[0] if mix == "2d" else args.samples[1], cfg)
            for name in SAMPLERS:
                if name != "rk45":
                    rows += [run_default(p, name, nfe) for nfe in NFES]
            if mix == "64d":
                grids += [run_default(p, name, nfe, grid) for name in FLIP_SAMPLERS for grid in FLIP_GRIDS
                          for nfe in (5, 10, 20)]
                try:
                    peers += [{"problem": f"{mix}/{sched}", "sampler": r.sampler, "nfe": r.nfe, "flow_rms": r.flow_rms}
                              for r in sb.peer_rows(p, cfg, lambda s: None) if not math.isnan(r.flow_rms)]
                except ImportError:
                    print("diffusers is not installed (pip install -r bench/requirements.txt): no peer rows")
            print(f"{mix}/{sched} done", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": cpu_flags(), "rows": rows, "peers": peers, "grids": grids},
                                         indent=1))
    report(rows, peers, grids)


def report(rows: list[dict], peers: list[dict], grids: list[dict]) -> None:
    print(f"\nEach sampler on its default grid, 64-D mixture: log-lik gap (nats) linear / cosine; * = over {LIMIT:g} "
          "at 5-20 NFE")
    print("| sampler | grid (5 NFE) | " + " | ".join(f"NFE {n}" for n in NFES) + " |")
    print("|---|---|" + "---:|" * len(NFES))
    for name in (n for n in SAMPLERS if n != "rk45"):
        cells, grid = [], ""
        for n in NFES:
            sel = [r for r in rows if r["sampler"] == name and r["nfe_asked"] == n and r["problem"].startswith("64d")]
            grid = grid or sel[0]["grid"]
            bad = n <= 20 and any(abs(r["ll_gap"]) > LIMIT for r in sel)
            cells.append(" / ".join(f"{r['ll_gap']:+.1f}" for r in sel) + (" *" if bad else ""))
        print(f"| {name} | {grid} | " + " | ".join(cells) + " |")
    print("\nThe automatic choice against the best diffusers scheduler: RMS distance to the exact flow image")
    print("| problem | NFE | auto | its RMS | best diffusers | its RMS | ratio |")
    print("|---|---:|---|---:|---|---:|---:|")
    for prob in sorted({r["problem"] for r in peers}):
        for n in (5, 10, 20):
            mine = next(r for r in rows if r["problem"] == prob and r["sampler"] == auto_sampler(n) and r["nfe_asked"] == n)
            cand = [r for r in peers if r["problem"] == prob and n - 1 <= r["nfe"] <= n]
            if cand:
                b = min(cand, key=lambda r: r["flow_rms"])
                print(f"| {prob} | {n} | {mine['sampler']} | {mine['flow_rms']:.4f} | {b['sampler']} | "
                      f"{b['flow_rms']:.4f} | {mine['flow_rms'] / b['flow_rms']:.2f}x |")
    print("\nShare of samples in another mode than the exact flow's, 64-D mixture (linear / cosine)")
    print("| sampler | grid | NFE 5 | NFE 10 | NFE 20 |")
    print("|---|---|---:|---:|---:|")
    for name in FLIP_SAMPLERS:
        for g in FLIP_GRIDS:
            cells = [" / ".join(f"{r['flips']:.3f}" for r in grids if (r["sampler"], r["grid"], r["nfe_asked"]) ==
                                (name, g, n)) for n in (5, 10, 20)]
            print(f"| {name} | {g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
