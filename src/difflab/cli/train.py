"""difflab demo, train and train-classifier: a run folder from data (Algorithm 1), samples after it."""
from __future__ import annotations

import argparse
from pathlib import Path

from difflab.cli.common import common, log_for as _log, resume_base
from difflab.latent.recipe import latent_flags
from difflab.errors import UserError


def register(sub) -> None:
    d = sub.add_parser("demo", help="train on MNIST for a time budget, then sample, plot and report",
                       description="Train a diffusion model on MNIST for --minutes (a DDPM on the pixels, or latent "
                                   "diffusion where the CPU has no native bf16: --recipe), sample 64 digits, and "
                                   "write samples.png, forward.png, reverse.png, loss.png and report.md into --out.")
    d.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    d.add_argument("--minutes", type=float, default=8.0,
                   help="time budget of the whole demo in minutes: training stops early enough for sampling, figures "
                        "and the bound, which shrink to fit a short budget (default: 8)")
    d.add_argument("--seed", type=int, default=0, help="seed for training and sampling (default: 0)")
    d.add_argument("--recipe", default="auto",
                   help="pixel: a DDPM on the images, sampled by Algorithm 2; latent: a VAE for a quarter of the "
                        "budget, then diffusion on its latents (more quality per CPU-second where fp32 is all "
                        "there is); auto: latent on a CPU without native bf16, else pixel (default: auto)")
    common(d)
    d.set_defaults(handler=cmd_demo)

    t = sub.add_parser("train", help="train a diffusion model (Algorithm 1) into a run folder",
                       description="Train a diffusion model. Settings come from defaults, then --config YAML, then "
                                   "the flags below, then --set overrides. Writes checkpoint.safetensors (and the last "
                                   "train.keep_checkpoints in checkpoints/), config.yaml, metrics.jsonl, tb/ and "
                                   "loss.png into --out. Under torchrun it trains data parallel (gloo on CPUs, NCCL "
                                   "on GPUs); train.precision=bf16|fp16, train.compile=true and train.grad_accum=K "
                                   "are switches (docs/training.md).")
    train_args(t)
    t.add_argument("--latent", metavar="RUN", help="train on the latents of an autoencoder run (difflab "
                                                   "train-autoencoder): its data unless --data, a U-Net for image "
                                                   "latents, an MLP for vector latents; sampling decodes")
    common(t)
    t.set_defaults(handler=cmd_train)
    k = sub.add_parser("train-classifier", help="train a noise-conditional classifier p(y | x_t, t) for classifier "
                                                "guidance (= train --set model=classifier)",
                       description="Train the noise-conditional classifier of classifier guidance on noised labelled "
                                   "data (the diffusion model's noise levels, the same training loop); then sample an "
                                   "unconditional run with --classifier RUN --class K --guidance S.")
    train_args(k)
    common(k)
    k.set_defaults(handler=cmd_train)


def cmd_demo(args: argparse.Namespace) -> int:
    from difflab.budget import Budget
    from difflab.demo import run_demo

    if args.minutes <= 0:
        raise UserError(f"--minutes must be positive, got {args.minutes}")
    run_demo(args.out, args.minutes, args.seed, args.set, log=_log(args), progress=not args.quiet,
             budget=Budget(start=args.started, clock=args.clock), recipe=args.recipe)
    return 0


def train_args(t: argparse.ArgumentParser) -> None:
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
    base = resume_base(Path(args.out)) if args.resume else None
    if getattr(args, "latent", None) and base is None:
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
