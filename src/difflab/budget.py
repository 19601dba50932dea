"""A command's wall-clock budget: training gets what is left after the work that must follow it (sampling,
figures, evaluation), estimated from timed network evaluations; and where the time went, phase by phase.

Every reading goes through one `Clock` (seconds, monotonic), so the decisions can be checked with a clock that
only advances with the work done (tests/test_budget.py)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch

TAIL_MARGIN = 1.3  # estimated follow-up work is padded by this factor
TAIL_FIXED_S = 3.0  # plus this much for files, figures and checkpoint writes

Clock = Callable[[], float]  # seconds from an arbitrary origin, never going back (time.monotonic)


@dataclass
class Budget:
    """`seconds` of wall-clock for a whole command (0: no limit), counted from `start` (a `clock` reading; default:
    now); `spent` by phase."""

    seconds: float = 0.0
    start: float | None = None
    spent: dict[str, float] = field(default_factory=dict)
    clock: Clock = time.monotonic

    def __post_init__(self) -> None:
        if self.start is None:
            self.start = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a block and add it to spent[name] (also when it raises)."""
        t0 = self.clock()
        try:
            yield
        finally:
            self.spent[name] = self.spent.get(name, 0.0) + self.clock() - t0

    def summary(self) -> dict[str, float]:
        """Seconds by phase, 'other' (set-up, loading) and 'total'; 'budget' when there is one."""
        total = self.elapsed()
        out = {k: round(v, 1) for k, v in self.spent.items()}
        out["other"] = round(max(0.0, total - sum(self.spent.values())), 1)
        out["total"] = round(total, 1)
        if self.seconds:
            out["budget"] = round(self.seconds, 1)
        return out

    def line(self) -> str:
        s = self.summary()
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in s.items() if k not in ("total", "budget"))
        of = f" of a {s['budget']:.0f} s budget" if "budget" in s else ""
        return f"time: {s['total']:.0f} s{of} ({parts})"


def timed(fn: Callable[[], object], repeats: int = 3, clock: Clock = time.perf_counter) -> float:
    """Mean seconds of `repeats` calls after one warm-up call (kernels chosen, caches warm): the mean, not the
    fastest, because the estimate is of work that runs many times."""
    fn()
    t0 = clock()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (clock() - t0) / repeats


def eval_seconds(denoiser: Callable, shape: Sequence[int], batch: int, device: torch.device, cond=None,
                 clock: Clock = time.perf_counter) -> float:
    """Seconds of one no-grad network evaluation on `batch` examples of `shape` (cond: `batch` rows or None)."""
    x = torch.zeros(batch, *shape, device=device)
    t = torch.full((batch,), 0.5, dtype=torch.float64, device=device)
    with torch.no_grad():
        return timed(lambda: denoiser(x, t, cond), clock=clock)


def reserve_seconds(estimates: Sequence[float]) -> float:
    """What to keep back from training for follow-up work estimated at `estimates` seconds."""
    return TAIL_MARGIN * sum(estimates) + TAIL_FIXED_S
