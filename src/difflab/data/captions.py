"""Text-to-image data: the two-digit canvas (two MNIST digits side by side, 28 x 56) with a caption that says which
digit is where, in varied phrasings (digits as symbols or number words, either order of mention), so a model must
read order and number words, not look a class up. Phrasings are split into training and held-out templates; a
word-level tokenizer (nn/text.py) with the training vocabulary turns captions into token ids (0 = padding, 1 = unknown).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from difflab.errors import UserError
from difflab.nn.text import words

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# {l} / {r}: the left / right digit as a symbol or a word (drawn per caption); {L} / {R}: always as a word
TRAIN_TEMPLATES = (
    "a {l} next to a {r}", "{l} {r}", "{L} on the left, {R} on the right", "{R} on the right, {L} on the left",
    "a {l} and then a {r}", "{L} followed by {R}", "left {l}, right {r}", "the digits {l} and {r}",
    "{r} on the right and {l} on the left", "a {l} on the left of a {r}",
)
HELD_OUT_TEMPLATES = ("{l} left of {r}", "a {R} to the right of a {L}", "first {L} then {R}")
MAX_TOKENS = 16  # the longest caption has 11 words
UNKNOWN = "<unk>"  # a word outside every vocabulary: what word dropout puts in a training caption


def _vocabulary() -> tuple[str, ...]:
    """Padding, unknown, the digits, the number words and the training templates' words: held-out phrasings may use
    words outside it, which the tokenizer reads as unknown (as any fixed vocabulary does with new words)."""
    filler = {w for t in TRAIN_TEMPLATES for w in words(re.sub(r"\{[lrLR]\}", " ", t))}
    return ("<pad>", UNKNOWN) + tuple(str(d) for d in range(10)) + NUMBER_WORDS + tuple(sorted(filler))


VOCAB = _vocabulary()


def caption(left: int, right: int, template: str, rng: np.random.Generator, word_dropout: float = 0.0) -> str:
    """One caption of the pair (left, right) in a template; {l} / {r} become a symbol or a word at random, and each
    other word becomes unknown with probability `word_dropout` (so a model learns to read past unknown words)."""
    def say(d: int) -> str:
        return str(d) if rng.random() < 0.5 else NUMBER_WORDS[d]
    text = template.format(l=say(left), r=say(right), L=NUMBER_WORDS[left], R=NUMBER_WORDS[right])
    if word_dropout <= 0:
        return text
    digits = set(NUMBER_WORDS) | {str(d) for d in range(10)}
    return " ".join(w if w in digits or rng.random() >= word_dropout else UNKNOWN for w in words(text))


@dataclass(frozen=True, eq=False)
class Canvas:
    """Two-digit images and what is on them."""

    images: np.ndarray  # (N, 28, 56) uint8: digit `left` in columns 0..27, `right` in 28..55
    left: np.ndarray  # (N,) int64
    right: np.ndarray  # (N,) int64
    captions: tuple[str, ...]  # one per image, from the given templates


def two_digit_canvas(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0,
                     templates: Sequence[str] = TRAIN_TEMPLATES, word_dropout: float = 0.0) -> Canvas:
    """n canvases from random pairs of the given digits (N, 28, 28) uint8 with their labels (N,); captions drawn
    from `templates` (the held-out ones for evaluation), with word dropout for training."""
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels) or len(images) < 2:
        raise UserError(f"the two-digit canvas needs (N, 28, 28) digits with N labels, got {images.shape} and "
                        f"{len(labels)} labels")
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(images), n), rng.integers(0, len(images), n)
    canvas = np.concatenate([images[a], images[b]], axis=2)  # (n, 28, 56)
    left, right = labels[a].astype(np.int64), labels[b].astype(np.int64)
    picks = rng.integers(0, len(templates), n)
    caps = tuple(caption(int(left[k]), int(right[k]), templates[picks[k]], rng, word_dropout) for k in range(n))
    return Canvas(canvas, left, right, caps)


def example_prompts(n: int) -> tuple[str, ...]:
    """n prompts for a sample grid: sample k asks for digits (k mod 10) left and (k // 10 + 3 k) mod 10 right, in
    the first training phrasing."""
    return tuple(TRAIN_TEMPLATES[0].format(l=k % 10, r=(k // 10 + 3 * k) % 10) for k in range(n))
