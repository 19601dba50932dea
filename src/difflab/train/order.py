"""What each step sees: a seed per step and an endless shuffled data stream, both pure functions of position.

This is the distributed sampler too: every rank computes the same global batch and takes its own slice, so the
order does not depend on the number of ranks, and resuming at image n continues the stream exactly.
"""
from __future__ import annotations

import torch
from torch import Tensor


def step_seed(seed: int, step: int) -> int:
    """The seed of step `step`: t, eps, dropout and data order depend only on (seed, step)."""
    return (seed * 1_000_003 + step * 7919 + 12345) % (2**63)


class DataOrder:
    """An endless stream of shuffled indices: epoch e is a permutation seeded by (seed, e)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self._cache = n, seed, {}

    def perm(self, epoch: int) -> Tensor:
        if epoch not in self._cache:
            self._cache = {epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 31 + epoch))}
        return self._cache[epoch]

    def batch(self, start: int, size: int) -> Tensor:
        """Indices of stream positions start .. start + size - 1 (start = images seen so far)."""
        pos = torch.arange(start, start + size)
        return torch.cat([self.perm(int(e))[pos[pos // self.n == e] % self.n] for e in (pos // self.n).unique()])
