"""difflab command line: parse -> config -> build -> call. Bad input ends in one line and exit code 2."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

STARTED = time.monotonic()  # the command's clock starts here, before torch is imported

from difflab.cli.common import log_for as _log
from difflab.cli.evaluate import cmd_eval
from difflab.errors import UserError

EPILOG = """examples:
  difflab demo                                  # 8 min on 2 CPU cores: MNIST samples, plots, report in runs/demo
  difflab train --data mnist --minutes 30 --out runs/mnist
  difflab train --config my.yaml --set train.lr=1e-3 --set unet.base_channels=64
  difflab train --out runs/mnist --resume        # continue where the checkpoint stopped (or start)
  torchrun --standalone --nproc_per_node=2 -m difflab train --data mnist --out runs/ddp   # data parallel
  difflab sample --run runs/mnist --num 64 --steps 250
  difflab sample --run runs/mnist --sampler dpmpp_3m --nfe 20   # any sampler, any grid (--grid karras)
  difflab sample --run runs/mnist --schedule cosine             # the network sees noise levels: any schedule
  difflab train --data mnist --set unet.num_classes=10 --set train.cond_dropout=0.1 --out runs/cond
  difflab sample --run runs/cond --class 7                       # class-conditional sampling
  difflab train --data mnist --set train.parameterization=edm --set train.objective=edm   # EDM precond + loss
  difflab train-classifier --data mnist --out runs/clf           # noise-conditional classifier p(y | x_t, t)
  difflab sample --run runs/cond --class 7 --guidance 3          # classifier-free guidance (w = 1: conditional)
  difflab sample --run runs/mnist --classifier runs/clf --class 7 --guidance 2   # classifier guidance
  difflab bench samplers                        # every sampler against exact scores, vs diffusers
  difflab config --show                         # every config key, its default and meaning
  difflab eval nll --checkpoint runs/mnist       # the ELBO term by term, bits/dim on the test split
  difflab eval all --run runs/mnist --features mnist   # FID, KID, precision/recall (inception: the standard FID)
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def make_parser() -> Parser:
    p = Parser(prog="difflab", description="Diffusion models by the book: train, sample, demo.",
               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    d = sub.add_parser("demo", help="train on MNIST for a time budget, then sample, plot and report",
                       description="Train a DDPM on MNIST for --minutes, sample 64 digits with Algorithm 2, and write "
                                   "samples.png, forward.png, reverse.png, loss.png and report.md into --out.")
    d.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    d.add_argument("--minutes", type=float, default=8.0,
                   help="time budget of the whole demo in minutes: training stops early enough for sampling, figures "
                        "and the bound, which shrink to fit a short budget (default: 8)")
    d.add_argument("--seed", type=int, default=0, help="seed for training and sampling (default: 0)")
    _common(d)

    t = sub.add_parser("train", help="train a diffusion model (Algorithm 1) into a run folder",
                       description="Train a diffusion model. Settings come from defaults, then --config YAML, then "
                                   "the flags below, then --set overrides. Writes checkpoint.safetensors (and the last "
                                   "train.keep_checkpoints in checkpoints/), config.yaml, metrics.jsonl, tb/ and "
                                   "loss.png into --out. Under torchrun it trains data parallel (gloo on CPUs, NCCL "
                                   "on GPUs); train.precision=bf16|fp16, train.compile=true and train.grad_accum=K "
                                   "are switches (docs/training.md).")
    _train_args(t)
    t.add_argument("--latent", metavar="RUN", help="train on the latents of an autoencoder run (difflab "
                                                   "train-autoencoder): its data unless --data, a U-Net for image "
                                                   "latents, an MLP for vector latents; sampling decodes")
    _common(t)
    k = sub.add_parser("train-classifier", help="train a noise-conditional classifier p(y | x_t, t) for classifier "
                                                "guidance (= train --set model=classifier)",
                       description="Train the noise-conditional classifier of classifier guidance on noised labelled "
                                   "data (the diffusion model's noise levels, the same training loop); then sample an "
                                   "unconditional run with --classifier RUN --class K --guidance S.")
    _train_args(k)
    _common(k)

    from difflab.cli.sample import add_parsers as sample_parsers

    sample_parsers(sub, _common)

    from difflab.cli.evaluate import add_parsers as eval_parsers
    from difflab.cli.latent import add_parsers as latent_parsers
    from difflab.cli.restore import add_parsers as restore_parsers

    restore_parsers(sub)
    latent_parsers(sub, _common)
    eval_parsers(sub, _common, Parser)

    c = sub.add_parser("config", help="every config key with its default and meaning",
                       description="Print every config key (section.key) with its default and meaning; set them in a "
                                   "--config YAML file or with --set section.key=value.")
    c.add_argument("--show", action="store_true", help="print the table (the default action)")
    c.add_argument("--markdown", action="store_true", help="as a Markdown table (the README's)")

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
    _common(bs, config=False)
    return p


def _common(p: argparse.ArgumentParser, config: bool = True, example: str = "train.lr=1e-3") -> None:
    if config:
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help=f"override any config key, e.g. --set {example} (repeatable)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def main(argv: list[str] | None = None, started: float | None = None, clock=time.monotonic) -> int:
    """Run one command. A time budget (--minutes) is read on `clock` from `started`, a reading of it: by default
    when this module was imported (the start of the process for the command line), or now on another clock."""
    from difflab.train.interrupt import Interrupted

    argv = sys.argv[1:] if argv is None else list(argv)
    args = make_parser().parse_args(argv)
    if started is None:
        started = STARTED if clock is time.monotonic else clock()
    args.started, args.clock = started, clock
    rank = os.environ.get("RANK", "0")
    try:
        import torch

        if getattr(args, "threads", None) is not None:
            if args.threads < 1:
                raise UserError(f"--threads must be at least 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        return COMMANDS[args.command](args)
    except UserError as e:
        if rank == "0":  # under torchrun every rank stops with the same error: rank 0 alone says it
            sys.stderr.write(f"difflab {args.command}: error: {in_flags(str(e), argv)}\n")
        return 2
    except BrokenPipeError:  # `difflab config --show | head`: the reader left, nothing went wrong
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as e:  # read-only folder, a file where a folder should be, disk full
        sys.stderr.write(f"difflab {args.command}: error: cannot write {e.filename or ''}: {e.strerror or e}; "
                         "choose a writable --out folder\n")
        return 2
    except Interrupted as e:
        if rank == "0":
            sys.stderr.write(f"difflab {args.command}: interrupted: {e.message}\n")
        return 130
    except KeyboardInterrupt:
        trains = args.command in ("train", "train-classifier", "vae", "train-autoencoder")
        hint = "; the newest checkpoint is kept: continue with --resume" if trains else ""
        sys.stderr.write(f"difflab {args.command}: interrupted{hint}\n")
        return 130


def cmd_demo(args: argparse.Namespace) -> int:
    from difflab.budget import Budget
    from difflab.demo import run_demo

    if args.minutes <= 0:
        raise UserError(f"--minutes must be positive, got {args.minutes}")
    run_demo(args.out, args.minutes, args.seed, args.set, log=_log(args), progress=not args.quiet,
             budget=Budget(start=args.started, clock=args.clock))
    return 0


def _train_args(t: argparse.ArgumentParser) -> None:
    """The flags of train and train-classifier."""
    t.add_argument("--config", help="YAML file with sections model, arch, data, schedule, unet, mlp, vae, classifier, "
                                    "train, sample (every key: difflab config --show)")
    t.add_argument("--out", default="runs/train", help="run folder (default: runs/train)")
    t.add_argument("--data", help="dataset: mnist, folder, npz (images), or moons, swiss_roll, gmm (2-D points: add "
                                  "--set arch=mlp) (sets data.name)")
    t.add_argument("--data-path", help="folder of images or .npz file (sets data.path)")
    t.add_argument("--minutes", type=float,
                   help="time budget of the whole command: training stops early enough for the samples after it; "
                        "a resumed run's --minutes is its total (30 after 20 trains ~10 more) (sets train.minutes)")
    t.add_argument("--max-images", type=int, help="stop after this many images (sets train.max_images)")
    t.add_argument("--resume", action="store_true",
                   help="continue from the newest readable checkpoint in --out, or start there if it has none (so one "
                        "command also restarts a crashed job); raise --max-images or --minutes to train further")
    t.add_argument("--sample", type=int, metavar="N",
                   help="after training, draw N samples with the run's sampler (default: sample.num_samples = 64 "
                        "with dpmpp_3m at 20 network evaluations; 0: none)")


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from difflab.budget import Budget
    from difflab.config import build_config, load_yaml, merge
    from difflab.runs import train_and_sample

    flags = [f"data.name={args.data}"] if args.data else []
    flags += [f"data.path={args.data_path}"] if args.data_path else []
    flags += [f"train.minutes={args.minutes}"] if args.minutes is not None else []
    flags += [f"train.max_images={args.max_images}"] if args.max_images is not None else []
    base = _resume_base(Path(args.out)) if args.resume else None
    if getattr(args, "latent", None) and base is None:
        from difflab.cli.latent import latent_flags

        flags = latent_flags(args.latent, bool(args.data)) + flags
    if base is not None and args.config:
        base = merge(base, load_yaml(args.config))
    model = ["model=classifier"] if args.command == "train-classifier" else []
    cfg = build_config(None if base is not None else args.config, model + flags + args.set, base=base)
    if args.sample is not None and args.sample < 0:
        raise UserError(f"--sample must be >= 0 (0: no samples after training), got {args.sample}")
    if args.sample:
        cfg = replace(cfg, sample=replace(cfg.sample, num_samples=args.sample))
    train_and_sample(cfg, args.out, sample=args.sample != 0, resume=args.resume, log=_log(args),
                     progress=not args.quiet, budget=Budget(start=args.started, clock=args.clock))
    return 0


def _resume_base(out: Path) -> dict | None:
    """On --resume the run's own config is the base, so a resumed run trains the same model (None: a new run)."""
    from difflab.config import load_yaml, upgrade
    from difflab.train.checkpoint import read_meta
    from difflab.train.store import CheckpointStore

    found = CheckpointStore(out).candidates()  # readable headers, newest first
    if found:
        return upgrade(read_meta(found[0][1])["config"])
    if (out / "config.yaml").is_file():  # killed before its first checkpoint: the same run, from the start
        return upgrade(load_yaml(out / "config.yaml"))
    return None


def cmd_sample(args: argparse.Namespace) -> int:
    from difflab.cli.sample import cmd_sample as run

    return run(args)


def cmd_restore(args: argparse.Namespace) -> int:
    from difflab.cli.restore import cmd_restore as run

    return run(args)


def cmd_edit(args: argparse.Namespace) -> int:
    from difflab.cli.restore import cmd_edit as run

    return run(args)


def cmd_train_autoencoder(args: argparse.Namespace) -> int:
    from difflab.cli.latent import cmd_train_autoencoder as run

    return run(args)


def cmd_export_text(args: argparse.Namespace) -> int:
    from difflab.cli.sample import cmd_export_text as run

    return run(args)


def cmd_vae(args: argparse.Namespace) -> int:
    from difflab.cli.latent import cmd_vae as run

    return run(args)


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


FLAG_KEYS = {"--data": "data.name", "--data-path": "data.path", "--minutes": "train.minutes",
             "--max-images": "train.max_images", "--num": "sample.num_samples", "--sampler": "sample.sampler",
             "--nfe": "sample.nfe", "--steps": "sample.steps", "--eta": "sample.eta", "--seed": "sample.seed",
             "--grid": "sample.grid", "--variance": "sample.variance", "--class": "sample.classes", "--prompt": "sample.prompts",
             "--levels": "vae.levels"}


def in_flags(message: str, argv: list[str]) -> str:
    """Name the flag the user typed instead of the config key it sets (`--data-path`, not `data.path`)."""
    import re

    for flag, key in FLAG_KEYS.items():
        if any(a == flag or a.startswith(flag + "=") for a in argv):
            message = re.sub(rf"(config key )?(?<![\w.]){re.escape(key)}(?![\w])", flag, message)
    return message


def cmd_config(args: argparse.Namespace) -> int:
    from difflab.config_doc import config_table, config_text

    print(config_table() if args.markdown else config_text())
    return 0


COMMANDS = {"demo": cmd_demo, "train": cmd_train, "train-classifier": cmd_train, "sample": cmd_sample,
            "eval": cmd_eval, "vae": cmd_vae, "train-autoencoder": cmd_train_autoencoder,
            "export-text-encoder": cmd_export_text, "restore": cmd_restore,
            "edit": cmd_edit,
            "bench": cmd_bench, "config": cmd_config}

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
