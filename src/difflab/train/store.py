"""A run folder's checkpoints: checkpoint.safetensors is the newest, checkpoints/ keeps the last k, and resuming
takes the newest one that reads (a crash mid-write leaves only a temp file, never a damaged checkpoint)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable

from torch import Tensor

from difflab.errors import UserError
from difflab.train.checkpoint import load_checkpoint, read_meta, save_checkpoint

LATEST = "checkpoint.safetensors"
FOLDER = "checkpoints"
_STEP = re.compile(r"step-(\d+)\.safetensors")


class CheckpointStore:
    def __init__(self, run_dir: str | Path, keep: int = 3):
        self.dir, self.keep = Path(run_dir), keep
        self.latest = self.dir / LATEST

    def save(self, step: int, tensors: dict[str, Tensor], meta: dict) -> Path:
        """checkpoints/step-N.safetensors (atomic), then checkpoint.safetensors points at it (atomic), then prune."""
        folder = self.dir / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step-{step:08d}.safetensors"
        save_checkpoint(path, tensors, meta)
        tmp = self.dir / f".{LATEST}.tmp{os.getpid()}"
        try:
            try:
                os.link(path, tmp)  # same bytes, no second copy on disk
            except OSError:
                shutil.copyfile(path, tmp)
            os.replace(tmp, self.latest)
        finally:
            if tmp.exists():
                tmp.unlink()
        for old in self.step_files()[self.keep:]:
            old.unlink(missing_ok=True)
        return path

    def step_files(self) -> list[Path]:
        """checkpoints/step-*.safetensors, newest first."""
        files = [p for p in (self.dir / FOLDER).glob("step-*.safetensors") if _STEP.fullmatch(p.name)]
        return sorted(files, key=lambda p: int(_STEP.fullmatch(p.name).group(1)), reverse=True)

    def candidates(self) -> list[tuple[int, Path]]:
        """(step, path) of every checkpoint whose header reads, newest first (the latest link first on a tie)."""
        found = []
        for rank, p in enumerate([self.latest, *self.step_files()]):
            step = header_step(p)
            if step is not None:
                found.append((step, -rank, p))
        return [(s, p) for s, _, p in sorted(found, reverse=True)]

    def load_newest(self, log: Callable[[str], None] = print) -> tuple[Path, dict[str, Tensor], dict] | None:
        """The newest checkpoint that loads; damaged ones are named and skipped; None when there is none."""
        for p in [self.latest, *self.step_files()]:
            if p.exists() and header_step(p) is None:
                log(f"skipping {p}: not a readable difflab checkpoint")
        for _, path in self.candidates():
            try:
                tensors, meta = load_checkpoint(path)
            except UserError as e:
                log(f"skipping {path}: {e}")
                continue
            return path, tensors, meta
        return None

    def check_writable(self) -> None:
        """Fail before training, not at the first checkpoint, when the run folder cannot take new files."""
        for folder in (self.dir, self.dir / FOLDER):
            probe = folder / f".write-test{os.getpid()}"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe.touch()
                probe.unlink()
            except OSError as e:
                raise UserError(f"cannot write to {folder} ({e.strerror or e}): choose a writable --out folder") \
                    from None

    def holds_run(self) -> bool:
        return self.latest.exists() or bool(self.step_files())

    def clear(self) -> None:
        """Remove every checkpoint (a run started over in the same folder)."""
        for p in [self.latest, *self.step_files()]:
            p.unlink(missing_ok=True)

    def clean_temps(self) -> None:
        """Remove temp files a killed writer left behind."""
        for folder in (self.dir, self.dir / FOLDER):
            for p in folder.glob(".*.tmp*"):
                p.unlink(missing_ok=True)


def header_step(path: Path) -> int | None:
    """The step recorded in a checkpoint's header, or None if the file is missing or unreadable."""
    try:
        return int(read_meta(path)["step"])
    except (UserError, KeyError, TypeError, ValueError):  # a damaged or foreign file is simply not a candidate
        return None
