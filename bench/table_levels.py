"""Trained on the table's steps or between them? A discrete-time network (linear table, T = 1000) sees only the
noise levels of steps i / T in training, while the usual grids of DDIM, DPM-Solver++, Heun, Euler–Maruyama and EDM
put most of their times between steps. On the 8-mode 2-D ring, where the true distribution is known, this trains
an MLP on integer steps and one on continuous t in [1/T, 1] (train.continuous_levels), then samples each with
every such sampler at 50 NFE on its usual grid, and on that grid snapped to the table (`on_table`).

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/table_levels.py   (a few minutes on one core)
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from difflab.config import build_config  # noqa: E402
from difflab.data.build import build_dataset  # noqa: E402
from difflab.data.toy import eight_mode_ring  # noqa: E402
from difflab.eval.sampler_bench import sliced_w2  # noqa: E402
from difflab.samplers import SAMPLERS  # noqa: E402
from difflab.samplers.generate import generate  # noqa: E402
from difflab.schedules.grids import make_grid, on_table  # noqa: E402
from difflab.train import loop  # noqa: E402
from difflab.train.build import build_denoiser, build_schedule  # noqa: E402
from difflab.train.run import load_run  # noqa: E402

BASE = {"arch": "mlp", "data": {"name": "gmm", "num_points": 20000}, "mlp": {"hidden": 128, "depth": 3},
        "train": {"batch_size": 256, "max_images": 256 * 4000, "lr": 2e-3, "warmup_images": 5000,
                  "ema_half_life_images": 20000, "log_every": 1000, "checkpoint_every_images": 10**9,
                  "parameterization": "eps", "tensorboard": False}}
SAMPLER_NAMES = ("ddim", "dpmpp_2m", "heun", "euler_maruyama", "edm")


def main() -> None:
    gmm = eight_mode_ring()
    truth = gmm.sample(4000, torch.Generator().manual_seed(9))[0]
    dirs = torch.nn.functional.normalize(torch.randn(64, 2, generator=torch.Generator().manual_seed(3),
                                                     dtype=torch.float64), dim=1)
    e_log_q = float(gmm.log_prob(truth).mean())
    rows = []
    for levels in ("integer", "continuous"):
        cfg = build_config(base={**BASE, "train": {**BASE["train"], "continuous_levels": levels == "continuous"}})
        with tempfile.TemporaryDirectory() as d:
            loop.train(cfg, build_dataset(cfg.data), d, progress=False, log=lambda s: None)
            run = load_run(d)
        s = build_schedule(cfg)
        den = build_denoiser(cfg, run.ema)
        for name in SAMPLER_NAMES:
            spec = SAMPLERS[name]
            usual = make_grid(spec.grid_for(s), s, spec.steps_for_nfe(name, 50))
            for grid_name, grid in (("usual", usual), ("on_table", on_table(usual, s.steps))):
                with torch.no_grad():
                    x = generate(den, (2,), 4000, s, grid, seed=0, batch_size=4000, sampler=spec.fn).double()
                row = {"trained": levels, "sampler": name, "grid": grid_name,
                       "off_table": int(((grid[1:-1] * s.steps - (grid[1:-1] * s.steps).round()).abs() > 1e-6).sum()),
                       "times": len(grid), "sw2": round(sliced_w2(x, truth, dirs), 4),
                       "ll_gap": round(float(gmm.log_prob(x).mean()) - e_log_q, 4)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = ROOT / "bench" / "out" / "table_levels.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print("| sampler | grid | trained on integer steps: SW2 / log-lik gap | trained between steps: SW2 / log-lik gap |")
    print("|---|---|---|---|")
    for name in SAMPLER_NAMES:
        for g in ("usual", "on_table"):
            a, b = (next(r for r in rows if (r["trained"], r["sampler"], r["grid"]) == (lv, name, g))
                    for lv in ("integer", "continuous"))
            print(f"| {name} | {g} ({a['off_table']} of {a['times']} times off the table) | {a['sw2']} / {a['ll_gap']:+} "
                  f"| {b['sw2']} / {b['ll_gap']:+} |")


if __name__ == "__main__":
    main()
