"""Every sampler on its default grid at few NFE, against exact scores: the 2-D and 64-D mixtures of the sampler bench
under the linear and cosine tables. Prints, per NFE, the log-likelihood gap (nats) and sliced W2 of each sampler on
its default grid and on the grid it had before (`--old`), and which sampler is most accurate at each budget (the
choice `difflab sample --nfe N` makes when no sampler is named).

  OMP_NUM_THREADS=1 .venv/bin/python bench/default_grids.py            # ~6 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from difflab.eval.sampler_bench import BenchConfig, _run, make_problem  # noqa: E402
from difflab.samplers import SAMPLERS  # noqa: E402
from difflab.samplers.registry import auto_sampler  # noqa: E402
from mnist_recipes import cpu_flags  # noqa: E402

OLD = {"ddim": "uniform", "euler_maruyama": "uniform", "pc": "uniform", "langevin": "karras", "heun": "uniform",
       "dpmpp_2m": "logsnr", "dpmpp_3m": "logsnr", "dpmpp_pc": "focus", "edm": "karras", "ancestral": "discrete"}
NFES = (5, 10, 20, 50)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, nargs=2, default=(2000, 500), help="points for the 2-D and 64-D mixture")
    ap.add_argument("--out", default="bench/out/default_grids.json")
    args = ap.parse_args()
    print(f"machine: {cpu_flags()}", flush=True)
    cfg, rows = BenchConfig(samples=tuple(args.samples)), []
    for mix in ("2d", "64d"):
        for sched in ("linear", "cosine"):
            p = make_problem(mix, sched, args.samples[0] if mix == "2d" else args.samples[1], cfg)
            for name, spec in SAMPLERS.items():
                if name == "rk45":
                    continue
                for which, grid in (("default", "auto"), ("old", OLD[name])):
                    for nfe in NFES:
                        steps = spec.steps_for_nfe(name, nfe)
                        times = spec.grid(grid, p.schedule, steps)
                        r = _run(p, grid, "difflab", not spec.stochastic,
                                 lambda den, noise: spec.fn(den, p.x_T, p.schedule, times, noise=noise))
                        rows.append({"problem": f"{mix}/{sched}", "sampler": name, "grid": which, "nfe": r.nfe,
                                     "nfe_asked": nfe, "ll_gap": r.ll_gap, "sw2": r.sw2, "floor_sw2": p.floors["sw2"]})
            print(f"{mix}/{sched} done", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": cpu_flags(), "rows": rows}, indent=1))
    report(rows)


def worst(rows: list[dict], name: str, which: str, nfe: int) -> tuple[float, float]:
    """(largest |log-lik gap|, largest SW2 / floor) over the four problems."""
    sel = [r for r in rows if (r["sampler"], r["grid"], r["nfe_asked"]) == (name, which, nfe)]
    return max(abs(r["ll_gap"]) for r in sel), max(r["sw2"] / r["floor_sw2"] for r in sel)


def report(rows: list[dict]) -> None:
    print("\nWorst case over the four problems: |log-lik gap| (nats) / SW2 in units of the exact-sample floor")
    print("| sampler | grid | " + " | ".join(f"NFE {n}" for n in NFES) + " |")
    print("|---|---|" + "---:|" * len(NFES))
    for name in SAMPLERS:
        if name == "rk45":
            continue
        for which in ("default", "old"):
            grid = SAMPLERS[name].default_grid if which == "default" else OLD[name]
            cells = [worst(rows, name, which, n) for n in NFES]
            print(f"| {name} | {grid}{' (before)' if which == 'old' else ''} | "
                  + " | ".join(f"{g:.3g} / {w:.3g}" if math.isfinite(g) else "inf" for g, w in cells) + " |")
    print("\nMost accurate on its default grid (smallest worst-case SW2 / floor) and the automatic choice:")
    for n in NFES:
        ranked = sorted((worst(rows, name, "default", n)[1], name) for name in SAMPLERS if name != "rk45")
        print(f"  NFE {n}: best {ranked[0][1]} ({ranked[0][0]:.3g}), then {ranked[1][1]} ({ranked[1][0]:.3g}); "
              f"auto picks {auto_sampler(n)}")


if __name__ == "__main__":
    main()
