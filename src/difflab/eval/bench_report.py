"""The sampler bench's outputs: a markdown table, the head-to-head at 10 and 20 NFE, convergence orders, a plot."""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from difflab.eval.sampler_bench import Row, best, order, rows_as_dicts  # noqa: E402

METRICS = {"ll_gap": "|log-lik gap| (nats)", "flow_rms": "RMS to exact flow", "ll_abs": "mean |log q - log q(flow)|",
           "sw2": "sliced W2", "mode_tv": "mode TV"}
ORDER_ROWS = (("euler_maruyama@uniform", "ll_gap"), ("ddim@uniform", "flow_rms"), ("heun@uniform", "flow_rms"),
              ("heun@logsnr", "flow_rms"), ("edm@karras", "flow_rms"), ("dpmpp_2m@logsnr", "flow_rms"), ("dpmpp_3m@logsnr", "flow_rms"),
              ("dpmpp_pc@logsnr", "flow_rms"))


def _problems(rows: list[Row]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r.mixture, r.schedule) for r in rows))


def head_to_head(rows: list[Row]) -> list[dict]:
    """Best difflab vs best diffusers at 10 and 20 NFE, per problem and metric (ratio <= 0.5 is the goal)."""
    out = []
    for mixture, schedule in _problems(rows):
        for nfe in (10, 20):
            for metric in ("ll_gap", "flow_rms", "ll_abs"):
                ours = best(rows, mixture, schedule, "difflab", nfe, metric)
                peer = best(rows, mixture, schedule, "diffusers", nfe, metric)
                if ours is None or peer is None:
                    continue
                a, b = abs(getattr(ours, metric)), abs(getattr(peer, metric))
                out.append({"mixture": mixture, "schedule": schedule, "nfe": nfe, "metric": metric,
                            "difflab": ours.sampler, "difflab_error": a, "diffusers": peer.sampler,
                            "diffusers_error": b, "ratio": a / b if b > 0 else math.inf})
    return out


def orders(rows: list[Row]) -> list[dict]:
    """Measured convergence orders (log-log slopes over NFE 20..100 and 100..1000) for the samplers with a known
    order; the high range is asymptotic for deterministic samplers, noise-bound for stochastic ones."""
    return [{"mixture": m, "schedule": s, "sampler": name, "metric": metric, "order": order(rows, m, s, name, metric),
             "order_high": order(rows, m, s, name, metric, 100, 1000)}
            for m, s in _problems(rows) for name, metric in ORDER_ROWS]


def markdown(rows: list[Row], floors: dict) -> str:
    lines = []
    for mixture, schedule in _problems(rows):
        sub = [r for r in rows if (r.mixture, r.schedule) == (mixture, schedule)]
        f = floors.get(f"{mixture}/{schedule}", {})
        lines += [f"### {mixture} mixture, {schedule} schedule", "",
                  f"Noise floor (8 fresh true sample sets against the same truth, mean +- sd): SW2 "
                  f"{f.get('sw2', math.nan):.4f} +- {f.get('sw2_sd', math.nan):.4f}, mode TV {f.get('mode_tv', math.nan):.4f} "
                  f"+- {f.get('mode_tv_sd', math.nan):.4f}, |log-lik gap| {f.get('ll_gap', math.nan):.4f}.", "",
                  "| library | sampler | NFE | log-lik gap | mean abs log-lik diff | RMS to flow | SW2 | mode TV |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r.library} | {r.sampler} | {r.nfe} | {r.ll_gap:+.4f} | {r.ll_abs:.4f} | {r.flow_rms:.4f} | {r.sw2:.4f} | "
                  f"{r.mode_tv:.4f} |" for r in sub]
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> Path:
    """Error against NFE, log-log: one column per problem, rows = |log-lik gap| and RMS to the exact flow."""
    probs = _problems(rows)
    fig, axes = plt.subplots(2, len(probs), figsize=(4.2 * len(probs), 7), squeeze=False)
    names = list(dict.fromkeys((r.library, r.sampler) for r in rows))
    colors = {k: (plt.cm.tab20(i % 20) if k[0] == "difflab" else plt.cm.tab20b(i % 20)) for i, k in enumerate(names)}
    for j, (mixture, schedule) in enumerate(probs):
        for i, metric in enumerate(("ll_gap", "flow_rms")):
            ax = axes[i][j]
            for lib, style in (("difflab", "-"), ("diffusers", ":")):
                for name in dict.fromkeys(r.sampler for r in rows if r.library == lib):
                    pts = sorted((r.nfe, abs(getattr(r, metric))) for r in rows if (r.mixture, r.schedule, r.library,
                                 r.sampler) == (mixture, schedule, lib, name) and math.isfinite(getattr(r, metric)))
                    pts = [q for q in pts if q[1] > 0]
                    if pts:
                        ax.plot(*zip(*pts), style, marker="o" if lib == "difflab" else "s", ms=2.5, lw=1.2,
                                color=colors[(lib, name)], label=f"{lib}: {name}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{mixture}, {schedule}", fontsize=9)
            ax.set_xlabel("NFE")
            ax.set_ylabel(METRICS[metric])
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=6.5, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(rows: list[Row], floors: dict, out: Path) -> dict:
    """bench.json, bench.md and bench.png in `out`; returns the summary (head-to-head and orders)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {"head_to_head": head_to_head(rows), "orders": orders(rows)}
    (out / "bench.json").write_text(json.dumps({"rows": rows_as_dicts(rows), "floors": floors, **summary}, indent=1))
    h2h = ["| problem | NFE | metric | best difflab | error | best diffusers | error | ratio |",
           "|---|---:|---|---|---:|---|---:|---:|"]
    h2h += [f"| {d['mixture']} {d['schedule']} | {d['nfe']} | {d['metric']} | {d['difflab']} | {d['difflab_error']:.4f} | "
            f"{d['diffusers']} | {d['diffusers_error']:.4f} | {d['ratio']:.2f} |" for d in summary["head_to_head"]]
    od = ["| problem | sampler | metric | order, NFE 20..100 | order, NFE 100..1000 |", "|---|---|---|---:|---:|"]
    od += [f"| {d['mixture']} {d['schedule']} | {d['sampler']} | {d['metric']} | {d['order']:.2f} | {d['order_high']:.2f} |"
           for d in summary["orders"]]
    (out / "bench.md").write_text("## Head to head\n\n" + "\n".join(h2h) + "\n\n## Orders\n\n" + "\n".join(od)
                                  + "\n\n## All rows\n\n" + markdown(rows, floors))
    plot(rows, out / "bench.png")
    return summary
