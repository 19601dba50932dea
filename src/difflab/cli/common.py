"""What every command shares: the parser that fails in one line, the flags every command takes, the log, and the
config a resumed run starts from."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def common(p: argparse.ArgumentParser, config: bool = True, example: str = "train.lr=1e-3") -> None:
    if config:
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help=f"override any config key, e.g. --set {example} (repeatable)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def log_for(args: argparse.Namespace):
    """print, flushed, unless --quiet."""
    return (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))


def resume_base(out: Path) -> dict | None:
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
