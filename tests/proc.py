"""Run the real command line: in this process (what most tests need: exit code, output, files), in a subprocess
(alone or under torchrun, where the process itself is under test), and kill it mid-run."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def env(**extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def command(*args: str, nproc: int = 0) -> list[str]:
    """`difflab ARGS`, or under torchrun with `nproc` processes."""
    launcher = [*TORCHRUN, f"--nproc_per_node={nproc}", "-m"] if nproc else [sys.executable, "-m"]
    return [*launcher, "difflab", *args]


def difflab(*args: str, cwd: Path, nproc: int = 0) -> subprocess.CompletedProcess:
    """`difflab ARGS` run in `cwd`: in this process (as `main` runs it for the command line: same exit code, stdout
    and stderr, an uncaught exception as a traceback and exit code 1), or under torchrun with `nproc` processes."""
    if nproc:
        return subprocess.run(command(*args, nproc=nproc), cwd=cwd, capture_output=True, text=True, env=env(),
                              timeout=600)
    return in_process(*args, cwd=cwd)


def in_process(*args: str, cwd: Path, clock=None) -> subprocess.CompletedProcess:
    """`difflab ARGS` in this process; `clock` (default: the machine's) is what a time budget is read on."""
    import torch

    from difflab.cli.main import main

    clock = clock or time.monotonic

    out, err, here, threads = io.StringIO(), io.StringIO(), os.getcwd(), torch.get_num_threads()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            _fresh_process_warnings()
            try:
                code = main(list(args), started=clock(), clock=clock)
            except SystemExit as e:  # argparse's usage errors and --help
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            except Exception:  # what a process would print before dying
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["difflab", *args], code, out.getvalue(), err.getvalue())


def _fresh_process_warnings() -> None:
    """The warning filters and output of a new Python process (pytest's capture would hide what a user sees)."""
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.simplefilter("ignore", category)
    warnings.showwarning = warnings._showwarning_orig  # type: ignore[attr-defined]  # writes to sys.stderr


def assert_one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in lines[0], lines[0]


def logged_steps(metrics: Path) -> int:
    try:
        return max((json.loads(ln)["step"] for ln in metrics.read_text().splitlines() if ln.strip()), default=0)
    except (OSError, ValueError):  # not there yet, or a line half-written
        return 0


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in sessions of their own)."""
    parent = {}
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
            parent[int(d.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
        except (ValueError, OSError):
            continue
    out, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parent.items() if p in frontier]
        out += kids
        frontier = kids
    return out


def wait_for_step(p: subprocess.Popen, metrics: Path, step: int, poll: float = 0.002, polls: int = 150_000) -> bool:
    """Poll until metrics.jsonl shows `step` (True), the process ends or `polls` polls pass (a hang; False)."""
    for _ in range(polls):
        if logged_steps(metrics) >= step:
            return True
        if p.poll() is not None:
            return False
        time.sleep(poll)
    return False


def kill_at_step(cmd: list[str], cwd: Path, run: Path, step: int) -> int:
    """Start `cmd`, SIGKILL it and every process under it once metrics.jsonl shows `step`; its returncode."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if wait_for_step(p, run / "metrics.jsonl", step):
        for pid in [p.pid, *descendants(p.pid)]:  # all at once, as a power cut would
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return p.wait()


@contextlib.contextmanager
def read_only(folder: Path):
    """Make `folder` (and what is in it) unwritable, also for root (immutable attribute); skip where impossible."""
    import pytest

    root = os.geteuid() == 0
    cmd = ["chattr", "-R", "+i", str(folder)] if root else ["chmod", "-R", "a-w", str(folder)]
    undo = ["chattr", "-R", "-i", str(folder)] if root else ["chmod", "-R", "u+w", str(folder)]
    try:
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            pytest.skip("cannot make a folder read-only here (chattr needs CAP_LINUX_IMMUTABLE on ext4/xfs)")
        try:
            (folder / ".probe").write_text("")
            pytest.skip("this file system ignores read-only folders")
        except OSError:
            pass
        yield folder
    finally:
        subprocess.run(undo, capture_output=True)
