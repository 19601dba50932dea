"""Trained runs that several tests share: trained once per machine, cached under .cache/test-runs/ by the content of
their config and of difflab's code, under a lock so that the suite's workers wait for one another instead of
training twice. Tests read a cached run and write nothing into it (copy it first to write)."""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import shutil
from pathlib import Path

from difflab.config import build_config, to_dict
from difflab.data.build import build_dataset
from difflab.data.mnist import cache_dir
from difflab.train import loop

SRC = Path(__file__).resolve().parents[1] / "src" / "difflab"


@functools.cache
def code_version() -> str:
    """sha256 of every source file of difflab: a change anywhere trains the cached runs anew."""
    h = hashlib.sha256()
    for f in sorted(SRC.rglob("*.py")):
        h.update(f.relative_to(SRC).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def trained_run(base: dict) -> Path:
    """The run folder of config `base` trained by loop.train (quietly), from the cache or trained now."""
    cfg = build_config(base=base)
    key = hashlib.sha256((json.dumps(to_dict(cfg), sort_keys=True) + code_version()).encode()).hexdigest()[:20]
    root = cache_dir() / "test-runs"
    run, done = root / key, root / key / "done"
    with locked(root / f"{key}.lock"):
        if not done.exists():
            shutil.rmtree(run, ignore_errors=True)  # a run cut off mid-training starts over
            loop.train(cfg, build_dataset(cfg.data), run, progress=False, log=lambda s: None)
            done.write_text("")
    return run


def copy_run(run: Path, to: Path) -> Path:
    """A writable copy of a cached run."""
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("done"))
    return to


def ring_run(kind: str = "linear", steps: int = 1500) -> Path:
    """An MLP trained on the 8-mode ring (eps-prediction, batches of 1024) in discrete (linear) or continuous (vp)
    time: 250 ancestral steps give mode TV ~0.02 and on-mode share ~0.89 after 1,500 steps (~0.8 after 800)."""
    return trained_run({"arch": "mlp", "data": {"name": "gmm", "num_points": 20000}, "mlp": {"hidden": 64, "depth": 3},
                        "schedule": {"kind": kind},
                        "train": {"batch_size": 1024, "max_images": 1024 * steps, "lr": 4e-3, "warmup_images": 5000,
                                  "ema_half_life_images": 40000, "log_every": 100, "checkpoint_every_images": 10**9,
                                  "parameterization": "eps"}})
