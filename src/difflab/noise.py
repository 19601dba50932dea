"""Per-example random streams: example k sees the same noise whatever the batch (or the rank) it is drawn in."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


class NoiseSource:
    """One torch.Generator per example, seeded from (seed, index); draws stack along the batch.

    Draws of one shape are made `block` at a time per generator and buffered, so a sampler's thousand small draws
    cost a few dozen generator calls per sample; the stream of example k is unchanged by batching. Training draws each
    shape once per step, so it uses block=1.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu", block: int = 32):
        self.device, self.block = torch.device(device), block
        self.generators = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]
        self._buf: Tensor | None = None  # (block, B, *shape)
        self._kind: tuple = ()
        self._pos = 0

    @classmethod
    def for_indices(cls, seed: int, indices: Sequence[int], device: torch.device | str = "cpu",
                    block: int = 32) -> "NoiseSource":
        """Example k gets stream seed * 1_000_003 + k, independent of batch composition."""
        return cls([seed * 1_000_003 + int(k) for k in indices], device, block)

    def _draw(self, fn, shape: Sequence[int], dtype: torch.dtype) -> Tensor:
        shape, kind = tuple(shape), (fn, tuple(shape), dtype)
        if self._buf is None or self._pos == self.block or self._kind != kind:
            self._buf = torch.stack([fn((self.block, *shape), generator=g, device=self.device, dtype=dtype)
                                     for g in self.generators], dim=1)  # (block, B, *shape)
            self._kind, self._pos = kind, 0
        self._pos += 1
        return self._buf[self._pos - 1]

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
        """A (B, *shape) standard normal tensor, row k drawn from generator k."""
        return self._draw(torch.randn, shape, dtype)

    def rand(self, shape: Sequence[int] = (), dtype: torch.dtype = torch.float64) -> Tensor:
        """A (B, *shape) uniform [0, 1) tensor, row k drawn from generator k (float64 by default: training times)."""
        return self._draw(torch.rand, shape, dtype)

    def randn_like(self, x: Tensor) -> Tensor:
        return self.randn(x.shape[1:], x.dtype).to(x.device)

    def __len__(self) -> int:
        return len(self.generators)
