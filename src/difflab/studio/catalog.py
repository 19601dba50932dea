"""The runs the studio serves: diffusion run folders found under the folders it was given, each named by a short id.
Nothing outside them is reachable: a request names a run by its id, a file by its name inside the run, and both are
checked against what was found."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from difflab.errors import UserError
from difflab.train.checkpoint import read_meta
from difflab.train.loop import CHECKPOINT

SHOWN = ("samples.png", "loss.png", "forward.png", "reverse.png", "report.md", "config.yaml", "summary.json")


@dataclass(frozen=True)
class RunEntry:
    id: str  # what requests name it by
    path: Path  # the run folder (resolved)
    config: dict  # the checkpoint's config
    step: int
    images: int

    def describe(self) -> dict:
        c = self.config
        unet = c.get("unet", {})
        text = c.get("text", {}).get("encoder", "none")
        classes = unet.get("num_classes", 0) if c.get("arch") == "unet" else c.get("mlp", {}).get("num_classes", 0)
        names = c.get("data", {}).get("class_names") or [str(k) for k in range(classes)]
        return {"id": self.id, "name": self.path.name, "data": c.get("data", {}).get("name"), "step": self.step,
                "images": self.images, "classes": names if classes else [], "text": text != "none",
                "latent": bool(c.get("data", {}).get("latent")), "schedule": c.get("schedule", {}).get("kind"),
                "parameterization": c.get("train", {}).get("parameterization"),
                "files": [f for f in SHOWN if (self.path / f).is_file()]}


class Catalog:
    """Diffusion runs under `roots` (a run folder itself, or a folder holding runs, searched two levels deep)."""

    def __init__(self, roots: list[Path]):
        self.roots = [Path(r).resolve() for r in roots]
        missing = [str(r) for r in self.roots if not r.is_dir()]
        if missing:
            raise UserError(f"{missing[0]} is not a folder: pass run folders (or folders of runs) to --run")
        self.runs: dict[str, RunEntry] = {}
        self.refresh()

    def refresh(self) -> None:
        found: dict[str, RunEntry] = {}
        for root in self.roots:
            for ckpt in sorted({*root.glob(CHECKPOINT), *root.glob(f"*/{CHECKPOINT}"), *root.glob(f"*/*/{CHECKPOINT}")}):
                entry = _entry(ckpt.parent.resolve(), ckpt.stat().st_mtime)
                if entry is not None:
                    rid = _unique(re.sub(r"[^a-zA-Z0-9_-]+", "-", str(ckpt.parent.relative_to(root.parent))), found)
                    found[rid] = RunEntry(rid, *entry[1:])
        self.runs = found

    def get(self, run_id: str) -> RunEntry:
        entry = self.runs.get(run_id)
        if entry is None:
            raise UserError(f"no run {run_id!r} here: choose one of {', '.join(self.runs) or '(none found)'}")
        return entry

    def file(self, run_id: str, name: str) -> Path:
        """A file the run page shows, by name: only SHOWN names, inside the run's own folder."""
        entry = self.get(run_id)
        if name not in SHOWN:
            raise UserError(f"{name!r} is not a file the studio shows ({', '.join(SHOWN)})")
        path = (entry.path / name).resolve()
        if path.parent != entry.path or not path.is_file():
            raise UserError(f"the run {run_id} has no {name}")
        return path


@lru_cache(maxsize=256)
def _entry(folder: Path, mtime: float) -> tuple | None:
    """(None, folder, config, step, images) of an image diffusion run's checkpoint header, else None (another model
    kind, points or rows, a checkpoint written before training, a damaged file); cached per file version."""
    try:
        meta = read_meta(folder / CHECKPOINT)
    except UserError:
        return None
    cfg = meta.get("config")
    if not isinstance(cfg, dict) or cfg.get("model", "diffusion") != "diffusion" or not meta.get("data"):
        return None
    if len(meta["data"].get("shape", ())) != 3:  # the studio shows images (a latent run's decoded ones too)
        return None
    return None, folder, json.loads(json.dumps(cfg)), int(meta.get("step", 0)), int(meta.get("images", 0))


def _unique(rid: str, taken: dict) -> str:
    k, out = 2, rid
    while out in taken:
        out, k = f"{rid}-{k}", k + 1
    return out
