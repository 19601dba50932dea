"""What every command shares."""
from __future__ import annotations

import argparse


def log_for(args: argparse.Namespace):
    """print, flushed, unless --quiet."""
    return (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
