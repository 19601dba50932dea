"""Text-to-image data: the two-digit canvas (two MNIST digits side by side, 28 x 56) with a caption that says which
digit is where, in varied phrasings (digits as symbols or number words, either order of mention), so a model must
read order and number words, not look a class up. Phrasings are split into training and held-out templates; a
word-level tokenizer with a fixed vocabulary turns captions into token ids (0 = padding, 1 = unknown word).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from difflab.errors import UserError

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# {l} / {r}: the left / right digit as a symbol or a word (drawn per caption); {L} / {R}: always as a word
TRAIN_TEMPLATES = (
    "a {l} next to a {r}", "{l} {r}", "{L} on the left, {R} on the right", "{R} on the right, {L} on the left",
    "a {l} and then a {r}", "{L} followed by {R}", "left {l}, right {r}", "the digits {l} and {r}",
    "{r} on the right and {l} on the left", "a {l} on the left of a {r}",
)
HELD_OUT_TEMPLATES = ("{l} left of {r}", "a {R} to the right of a {L}", "first {L} then {R}")
PAD, UNK = 0, 1
MAX_TOKENS = 16


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+|[0-9]", text.lower())


def _vocabulary() -> tuple[str, ...]:
    words = {w for t in TRAIN_TEMPLATES + HELD_OUT_TEMPLATES for w in _words(re.sub(r"\{[lrLR]\}", " ", t))}
    return ("<pad>", "<unk>") + tuple(str(d) for d in range(10)) + NUMBER_WORDS + tuple(sorted(words - set(NUMBER_WORDS)))


VOCAB = _vocabulary()
INDEX = {w: i for i, w in enumerate(VOCAB)}


def tokenize(text: str, length: int = MAX_TOKENS) -> Tensor:
    """(length,) int64 token ids of a caption, padded with 0; words outside the vocabulary become 1 (unknown)."""
    ids = [INDEX.get(w, UNK) for w in _words(text)]
    if not ids:
        raise UserError(f"the prompt {text!r} has no words: say which digits to draw, e.g. 'a 3 next to a 7'")
    if len(ids) > length:
        raise UserError(f"the prompt {text!r} has {len(ids)} words; at most {length} fit")
    return torch.tensor(ids + [PAD] * (length - len(ids)), dtype=torch.long)


def detokenize(ids: Tensor) -> str:
    """The words of token ids, padding dropped."""
    return " ".join(VOCAB[int(i)] for i in ids if int(i) != PAD)


def caption(left: int, right: int, template: str, rng: np.random.Generator) -> str:
    """One caption of the pair (left, right) in a template; {l} / {r} become a symbol or a word at random."""
    def say(d: int) -> str:
        return str(d) if rng.random() < 0.5 else NUMBER_WORDS[d]
    return template.format(l=say(left), r=say(right), L=NUMBER_WORDS[left], R=NUMBER_WORDS[right])


@dataclass(frozen=True, eq=False)
class Canvas:
    """Two-digit images and what is on them."""

    images: np.ndarray  # (N, 28, 56) uint8: digit `left` in columns 0..27, `right` in 28..55
    left: np.ndarray  # (N,) int64
    right: np.ndarray  # (N,) int64
    captions: tuple[str, ...]  # one per image, from the given templates


def two_digit_canvas(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0,
                     templates: Sequence[str] = TRAIN_TEMPLATES) -> Canvas:
    """n canvases from random pairs of the given digits (N, 28, 28) uint8 with their labels (N,); captions drawn
    from `templates` (the held-out ones for evaluation)."""
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels) or len(images) < 2:
        raise UserError(f"the two-digit canvas needs (N, 28, 28) digits with N labels, got {images.shape} and "
                        f"{len(labels)} labels")
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(images), n), rng.integers(0, len(images), n)
    canvas = np.concatenate([images[a], images[b]], axis=2)  # (n, 28, 56)
    left, right = labels[a].astype(np.int64), labels[b].astype(np.int64)
    picks = rng.integers(0, len(templates), n)
    caps = tuple(caption(int(left[k]), int(right[k]), templates[picks[k]], rng) for k in range(n))
    return Canvas(canvas, left, right, caps)
