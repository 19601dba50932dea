"""difflab bench and difflab config: benchmarks that need no training, and the table of every config key."""
from __future__ import annotations

import argparse
from pathlib import Path

from difflab.cli.common import Parser, common, log_for as _log
from difflab.errors import UserError


def register(sub) -> None:
    c = sub.add_parser("config", help="every config key with its default and meaning",
                       description="Print every config key (section.key) with its default and meaning; set them in a "
                                   "--config YAML file or with --set section.key=value.")
    c.add_argument("--show", action="store_true", help="print the table (the default action)")
    c.add_argument("--markdown", action="store_true", help="as a Markdown table (the README's)")
    c.set_defaults(handler=cmd_config)

    b = sub.add_parser("bench", help="benchmarks (samplers: accuracy against exact scores, difflab vs diffusers)",
                       description="Benchmarks that need no training.")
    bsub = b.add_subparsers(dest="what", required=True, parser_class=Parser, metavar="WHAT")
    bs = bsub.add_parser("samplers", help="every sampler on Gaussian mixtures with exact scores, error against NFE",
                         description="Every difflab sampler (and diffusers' schedulers, if installed) driven by the "
                                     "exact score of a 2-D and a 64-D Gaussian mixture under the linear and cosine "
                                     "schedules, at a ladder of NFE. Prints the head-to-head at 10 and 20 NFE and the "
                                     "measured orders; writes bench.md, bench.json and bench.png into --out.")
    bs.add_argument("--out", default="runs/bench_samplers", help="output folder (default: runs/bench_samplers)")
    bs.add_argument("--nfe", type=int, nargs="+", help="NFE ladder (default: 5 10 20 50 100 1000)")
    bs.add_argument("--samples", type=int, nargs=2, metavar=("N2D", "N64D"), help="samples per problem (default: 4000 1000)")
    bs.add_argument("--mixtures", nargs="+", choices=["2d", "64d"], help="default: both")
    bs.add_argument("--schedules", nargs="+", choices=["linear", "cosine"], help="default: both")
    bs.add_argument("--no-peers", action="store_true", help="skip diffusers' schedulers")
    common(bs, config=False)
    bs.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from difflab.eval.bench_report import write_report
    from difflab.eval.sampler_bench import BenchConfig, run_bench

    cfg = BenchConfig(peers=not args.no_peers)
    changes = {k: tuple(v) for k, v in {"nfes": args.nfe, "samples": args.samples, "mixtures": args.mixtures,
                                        "schedules": args.schedules}.items() if v}
    cfg = replace(cfg, **changes)
    if min(cfg.nfes) < 2 or min(cfg.samples) < 10:
        raise UserError("--nfe values must be at least 2 and --samples at least 10")
    if cfg.peers:
        from difflab.eval.peers import require_diffusers

        require_diffusers()
    rows, floors = run_bench(cfg, log=_log(args))
    summary = write_report(rows, floors, Path(args.out))
    for d in summary["head_to_head"]:
        print(f"{d['mixture']:>3} {d['schedule']:<6} NFE {d['nfe']:>2} {d['metric']:<8} difflab {d['difflab']:<28} "
              f"{d['difflab_error']:.4f}  diffusers {d['diffusers']:<16} {d['diffusers_error']:.4f}  ratio {d['ratio']:.2f}")
    for d in summary["orders"]:
        print(f"{d['mixture']:>3} {d['schedule']:<6} order of {d['sampler']:<24} ({d['metric']}): {d['order']:.2f} "
              f"(NFE 20..100), {d['order_high']:.2f} (100..1000)")
    print(f"wrote {Path(args.out) / 'bench.md'} and bench.png")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from difflab.config_doc import config_table, config_text

    print(config_table() if args.markdown else config_text())
    return 0
