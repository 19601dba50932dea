"""difflab studio: the local web app (studio/)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from difflab.errors import UserError

LOCAL = ("127.0.0.1", "localhost", "::1")


def register(sub) -> None:
    s = sub.add_parser("studio", help="a local web app: sample, compare, restore and edit, trajectories live",
                       description="Serve the studio: pages to sample from a run (sampler, NFE, grid, seed, class or "
                                   "prompt, guidance; x_t and the predicted x0 streamed step by step), to compare two "
                                   "samplers or budgets from the same seed, to restore or edit an image drawn on a "
                                   "canvas, and a page per run (loss curve, samples, report, settings). Work queues on "
                                   "--workers threads; nothing outside the given run folders is served.")
    s.add_argument("--run", action="append", default=[], metavar="FOLDER",
                   help="a run folder, or a folder of runs (repeatable; default: runs)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    s.add_argument("--out", default="runs/studio", help="where jobs write their samples (default runs/studio)")
    s.add_argument("--workers", type=int, default=1, help="jobs run at once (default 1; each uses every core)")
    s.set_defaults(handler=cmd_studio)


def cmd_studio(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise UserError("the studio needs fastapi, uvicorn and python-multipart: pip install 'difflab[studio]' "
                        "(make setup installs them)") from None
    from difflab.studio.app import Studio, create_app

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    roots = [Path(r) for r in (args.run or ["runs"])]
    studio = Studio(roots, Path(args.out), workers=args.workers)
    if not studio.catalog.runs:
        raise UserError(f"no diffusion runs under {', '.join(map(str, roots))}: train one (make demo) or pass --run")
    if args.host not in LOCAL:
        sys.stderr.write(f"warning: serving on {args.host}: anyone who can reach this address can run jobs on this "
                         "machine and read these runs' samples and settings\n")
    print(f"difflab studio: {len(studio.catalog.runs)} run(s) at http://{args.host}:{args.port}/  (Ctrl-C stops)",
          flush=True)
    uvicorn.run(create_app(studio), host=args.host, port=args.port, log_level="warning")
    return 0
