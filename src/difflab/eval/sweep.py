"""Sample quality against NFE for several samplers of one trained run, in one command: every (sampler, NFE) draws the
same seeds, is scored in one feature space (FID, spread over seeds) or, for point data, by the sliced Wasserstein
distance, and timed; sweep.png plots quality against NFE with the spread as error bars."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from torch import Tensor

from difflab.errors import UserError
from difflab.eval.quality import QualityReport
from difflab.samplers.registry import SAMPLERS

DEFAULT_SAMPLERS = ("dpmpp_pc", "dpmpp_3m", "dpmpp_2m", "ddim", "edm", "euler_maruyama")
DEFAULT_NFES = (5, 10, 20, 50)


@dataclass(frozen=True)
class SweepPoint:
    """One sampler at one budget."""

    sampler: str
    nfe: int  # network evaluations spent per sample (the asked budget, or the largest grid within it)
    metric: str
    value: float
    spread: float  # s.d. over seeds (or a bootstrap of one set)
    n: int  # samples per seed
    seconds: float  # sampling time per set of n, on this machine


def parse_list(text: str | None, default: Sequence, kind: type, what: str) -> tuple:
    """'a,b,c' -> (a, b, c) of `kind`, or the default."""
    if text is None:
        return tuple(default)
    try:
        return tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{what} takes a comma-separated list like {','.join(map(str, default))}, got {text!r}") from None


def check_sweep(samplers: Sequence[str], nfes: Sequence[int]) -> None:
    """Refuse an unknown sampler or a budget under 2 evaluations (before any feature network is built)."""
    for name in samplers:
        if name not in SAMPLERS or SAMPLERS[name].adaptive:
            raise UserError(f"--samplers takes names from {sorted(k for k, v in SAMPLERS.items() if not v.adaptive)}, got {name!r} "
                            "(rk45 is adaptive: it has no NFE to sweep)")
    if not nfes or min(nfes) < 2:
        raise UserError(f"--nfe takes budgets of at least 2 network evaluations, got {list(nfes)}")


def nfe_sweep(pipe, samplers: Sequence[str], nfes: Sequence[int], num: int, seeds: int,
              score: Callable[[list[Tensor]], QualityReport], log: Callable[[str], None] = print) -> list[SweepPoint]:
    """Every sampler at every NFE it can run (two-evaluation samplers at the largest grid within the budget)."""
    check_sweep(samplers, nfes)
    points = []
    for name in samplers:
        for nfe in nfes:
            spec = SAMPLERS[name]
            if nfe < spec.evals({}) + 1:
                log(f"{name} needs at least {spec.evals({}) + 1} evaluations: skipping NFE {nfe}")
                continue
            plan = pipe.plan(pipe.sample_config(num, sampler=name, nfe=nfe), log=lambda s: None)
            t0 = time.perf_counter()
            sets = [pipe.draw(plan.with_seed(1000 * (k + 1))) for k in range(seeds)]
            secs = (time.perf_counter() - t0) / seeds
            row = score(sets).rows[0]
            points.append(SweepPoint(name, plan.nfe, row.metric, row.value, row.spread, row.n, round(secs, 2)))
            log(f"{name:>15} NFE {plan.nfe:>4}: {row.metric} {row.value:.4g} +- {row.spread:.2g} "
                f"({row.n} samples, {row.how}; {secs:.1f} s per set)")
    return points


def write_sweep(points: list[SweepPoint], out: str | Path, title: str) -> tuple[Path, Path]:
    """sweep.json and sweep.png (quality against NFE, one line per sampler, error bars = spread) in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    js = out / "sweep.json"
    js.write_text(json.dumps([asdict(p) for p in points], indent=1))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name in dict.fromkeys(p.sampler for p in points):
        ps = [p for p in points if p.sampler == name]
        ax.errorbar([p.nfe for p in ps], [p.value for p in ps], yerr=[p.spread for p in ps], marker="o", capsize=3,
                    label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations per sample (NFE)")
    ax.set_ylabel(points[0].metric if points else "")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = out / "sweep.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return js, png
