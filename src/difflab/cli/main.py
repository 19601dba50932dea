"""difflab command line: parse -> config -> build -> call. Bad input ends in one line and exit code 2."""
from __future__ import annotations

import argparse
import os
import sys
import time

STARTED = time.monotonic()  # the command's clock starts here, before torch is imported

from difflab.cli import evaluate, interop, latent, restore, sample, studio, tools, train
from difflab.cli.common import Parser
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
  difflab import-diffusers ddpm-folder --out runs/imported --data mnist   # a diffusers model as a difflab run
  difflab export-diffusers runs/mnist --out ddpm-mnist  # DDPMPipeline.from_pretrained("ddpm-mnist") loads it
  difflab studio --run runs                      # the web studio on http://127.0.0.1:8765/
"""


COMMAND_MODULES = (train, sample, restore, latent, evaluate, interop, studio, tools)  # each registers its subcommands


def make_parser() -> Parser:
    """Every command module under cli/ registers its own subcommands, each with the function that runs it."""
    p = Parser(prog="difflab", description="Diffusion models by the book: train, sample, demo.",
               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


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
        return args.handler(args)
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


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
