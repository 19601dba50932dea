"""The VAE commands: difflab vae (a VAE or hierarchical VAE by its ELBO), difflab train-autoencoder (the autoencoder
of latent diffusion: images, sequences or table rows)."""
from __future__ import annotations

import argparse
from pathlib import Path

from difflab.cli.common import common, log_for as _log, resume_base
from difflab.latent.recipe import AUTOENCODER_DEFAULTS, body_flags
from difflab.errors import UserError

def _vae_flags(p: argparse.ArgumentParser, what: str, out: str) -> None:
    """The flags both commands share."""
    p.add_argument("--config", help="YAML file with sections data, vae and train")
    p.add_argument("--out", default=out, help=f"run folder (default: {out})")
    p.add_argument("--minutes", type=float, help="training time budget; a resumed run's is its total "
                                                 "(sets train.minutes)")
    p.add_argument("--max-images", type=int, help="stop after this many examples (sets train.max_images)")
    p.add_argument("--resume", action="store_true", help="continue from the newest readable checkpoint in --out")
    p.add_argument("--eval-images", type=int, default=512, help=f"test examples for the {what} (default: 512)")


def register(sub) -> None:
    v = sub.add_parser("vae", help="train a VAE or hierarchical VAE by its ELBO and report the bound",
                       description="Train a convolutional VAE (vae.levels=1) or a Markovian hierarchical VAE "
                                   "(vae.levels>1) by its ELBO through the training loop of `difflab train` (EMA, "
                                   "checkpoints, --resume, torchrun); writes checkpoint.safetensors, samples.png, "
                                   "recon.png, metrics.jsonl and report.md with the bound term by term on the test "
                                   "split.")
    _vae_flags(v, "reported bound", "runs/vae")
    v.add_argument("--levels", type=int, help="latent levels (sets vae.levels)")
    common(v, example="train.lr=1e-3 --set vae.width=64")

    a = sub.add_parser("train-autoencoder", help="train the autoencoder of latent diffusion (images, sequences, rows)",
                       description="Train a KL-regularized VAE through the training loop as the autoencoder of a "
                                   "latent diffusion model: 2-D convolutions for images (latents at 1/4 of the size), "
                                   "1-D convolutions for sequences, an MLP for table rows, chosen from the data's "
                                   "shape. Writes checkpoint.safetensors, report.md (its ELBO term by term and the "
                                   "round-trip error on the test split), recon.png and samples.png; then train a "
                                   "diffusion model on its latents with difflab train --latent OUT.")
    a.add_argument("--data", default="mnist",
                   help="mnist, folder, npz (images), co2 (sequences), breast_cancer, wine (table rows) (sets data.name)")
    a.add_argument("--data-path", help="folder of images or .npz file (sets data.path)")
    _vae_flags(a, "report", "runs/autoencoder")
    common(a, example="vae.kl_weight=0.1 --set vae.latent_channels=8")
    v.set_defaults(handler=cmd_vae)
    a.set_defaults(handler=cmd_train_autoencoder)



def _train_vae(args: argparse.Namespace, defaults: dict, flags: list[str], data_flags=None) -> int:
    """Build the config (defaults, then --config, then flags, then --set; a resumed run's own config first) and train
    with the VAE's report. `data_flags(data config)` adds flags that depend on the data of a new run."""
    from difflab.config import build_config, load_yaml, merge
    from difflab.autoencoder import train_vae

    if args.eval_images < 2:
        raise UserError(f"--eval-images must be at least 2, got {args.eval_images}")
    flags = list(flags) + ([f"train.minutes={args.minutes}"] if args.minutes is not None else [])
    flags += [f"train.max_images={args.max_images}"] if args.max_images is not None else []
    base = resume_base(Path(args.out)) if args.resume else None
    if base is None and data_flags is not None:
        flags = data_flags(build_config(args.config, flags + args.set).data) + flags
    base = merge(base if base is not None else defaults, load_yaml(args.config) if args.config else {})
    cfg = build_config(None, flags + args.set, base=base)
    if cfg.model != "vae":
        raise UserError(f"difflab {args.command} trains model=vae, not {cfg.model!r}: drop model from the config")
    train_vae(cfg, args.out, resume=args.resume, eval_images=args.eval_images, log=_log(args), progress=not args.quiet)
    return 0


def cmd_vae(args: argparse.Namespace) -> int:
    from difflab.autoencoder import VAE_DEFAULTS

    return _train_vae(args, VAE_DEFAULTS, [f"vae.levels={args.levels}"] if args.levels is not None else [])


def cmd_train_autoencoder(args: argparse.Namespace) -> int:
    flags = [f"data.name={args.data}"] + ([f"data.path={args.data_path}"] if args.data_path else [])
    return _train_vae(args, AUTOENCODER_DEFAULTS, flags, body_flags)
