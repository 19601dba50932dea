"""Text-to-image data: the two-digit canvas (two MNIST digits side by side, 28 x 56) with a caption that says which
digit is where, in varied phrasings (digits as symbols or number words, either order of mention), so a model must
read order and number words, not look a class up. The phrasings, training and held-out, and the vocabulary are the caption
language of conditions/language.py; a word-level tokenizer (conditions/text.py) turns captions into token ids.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from difflab.conditions.language import TRAIN_TEMPLATES, caption
from difflab.errors import UserError


@dataclass(frozen=True, eq=False)
class Canvas:
    """Two-digit images and what is on them."""

    images: np.ndarray  # (N, 28, 56) uint8: digit `left` in columns 0..27, `right` in 28..55
    left: np.ndarray  # (N,) int64
    right: np.ndarray  # (N,) int64
    captions: tuple[str, ...]  # one per image, from the given templates


def two_digit_canvas(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0,
                     templates: Sequence[str] = TRAIN_TEMPLATES, word_dropout: float = 0.0,
                     exclude: Sequence[tuple[int, int]] = ()) -> Canvas:
    """n canvases from random pairs of the given digits (N, 28, 28) uint8 with their labels (N,); captions drawn
    from `templates` (the held-out ones for evaluation), with word dropout for training; no canvas shows a (left,
    right) digit pair of `exclude` (its right digit drawn again until it does not)."""
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels) or len(images) < 2:
        raise UserError(f"the two-digit canvas needs (N, 28, 28) digits with N labels, got {images.shape} and "
                        f"{len(labels)} labels")
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(images), n), rng.integers(0, len(images), n)
    banned = np.zeros((10, 10), bool)
    for pair in exclude:
        banned[pair] = True
    while (bad := banned[labels[a], labels[b]]).any():
        b[bad] = rng.integers(0, len(images), int(bad.sum()))
    canvas = np.concatenate([images[a], images[b]], axis=2)  # (n, 28, 56)
    left, right = labels[a].astype(np.int64), labels[b].astype(np.int64)
    picks = rng.integers(0, len(templates), n)
    caps = tuple(caption(int(left[k]), int(right[k]), templates[picks[k]], rng, word_dropout) for k in range(n))
    return Canvas(canvas, left, right, caps)
