"""What a user sees while something runs: a bar with ETA on a terminal, plain periodic lines in logs."""
from __future__ import annotations

import sys
import time
from typing import Callable

from tqdm import tqdm


class Progress:
    """Counts steps toward a total, or seconds toward a time budget when one is given (whichever ends first).

    On a TTY it draws a tqdm bar with rate and ETA; otherwise it logs a plain line every `every` steps.
    """

    def __init__(self, total: int, desc: str, unit: str = "it", every: int = 50, initial: int = 0,
                 log: Callable[[str], None] | None = None, enabled: bool = True, budget_s: float = 0.0,
                 spent_s: float = 0.0):
        self.total, self.desc, self.unit, self.every, self.n = total, desc, unit, every, initial
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.enabled, self.budget, self.spent0 = enabled, budget_s, spent_s
        self.start, self.start_n = time.time(), initial
        self.postfix = ""
        self.bar = None
        if enabled and sys.stderr.isatty():
            if budget_s:  # the bar runs over seconds of the budget
                self.bar = tqdm(total=round(budget_s), initial=round(spent_s), desc=desc, unit="s", dynamic_ncols=True,
                                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s [{elapsed}<{remaining}{postfix}]")
            else:
                self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, k: int = 1, **info: float) -> None:
        self.n += k
        self.postfix = " ".join(f"{key}={_fmt(v)}" for key, v in info.items())
        if self.bar is not None:
            if self.budget:
                self.bar.n = min(self.budget, self.spent0 + time.time() - self.start)
                self.postfix = f"{self.unit} {self.n} " + self.postfix
            else:
                self.bar.update(k)
            self.bar.set_postfix_str(self.postfix, refresh=True)
        elif self.enabled and (self.n % self.every == 0 or self.n == self.total):
            self.log(self.line())

    def eta(self) -> float:
        elapsed = time.time() - self.start
        rate = (self.n - self.start_n) / max(elapsed, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        if self.budget:
            eta = min(eta, max(0.0, self.budget - self.spent0 - elapsed))
        return eta

    def line(self) -> str:
        rate = (self.n - self.start_n) / max(time.time() - self.start, 1e-9)
        of = "" if self.budget else f"/{self.total}"  # a time budget ends it before the count, usually
        return f"{self.desc}: {self.unit} {self.n}{of} {rate:.2f}/s eta {self.eta():.0f}s {self.postfix}".rstrip()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
