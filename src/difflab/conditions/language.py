"""The caption language of the two-digit canvas: digits as symbols or number words, in training phrasings and
held-out ones, the words of its training vocabulary, and how a caption is said. The text encoders' tokenizer
(conditions/text.py) reads it; data/captions.py draws the images it describes."""
from __future__ import annotations

import re

import numpy as np


def words(text: str) -> list[str]:
    """Lower-case words and single digits: 'A 3, next to 17' -> ['a', '3', 'next', 'to', '1', '7']."""
    return re.findall(r"[a-z]+|[0-9]", text.lower())


NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# {l} / {r}: the left / right digit as a symbol or a word (drawn per caption); {L} / {R}: always as a word;
# {dl} / {dr}: always as a symbol
TRAIN_TEMPLATES = (
    "a {l} next to a {r}", "{l} {r}", "{L} on the left, {R} on the right", "{R} on the right, {L} on the left",
    "a {l} and then a {r}", "{L} followed by {R}", "left {l}, right {r}", "the digits {l} and {r}",
    "{r} on the right and {l} on the left", "a {l} on the left of a {r}",
)
# never in training, varied in structure: other word orders, punctuation, digits and words mixed, words the training
# vocabulary lacks ("placed", "sits", "leftmost", "beside", ...)
HELD_OUT_TEMPLATES = (
    "{l} left of {r}", "a {R} to the right of a {L}", "first {L} then {R}", "{dl} on the left, {dr} on the right",
    "left: {dl} / right: {dr}", "a {R} placed to the right of a {L}", "on the right a {r}, on the left a {l}",
    "leftmost {l}, rightmost {r}", "a {L} sits beside a {R}, the {L} first", "{dl} and {R}, in that order",
)
# digit pairs (left, right) never drawn on a training canvas with data.heldout_pairs: both orders of five pairs
HELD_OUT_PAIRS = ((3, 7), (7, 3), (1, 8), (8, 1), (2, 5), (5, 2), (0, 9), (9, 0), (4, 6), (6, 4))
MAX_TOKENS = 16  # the longest caption has 11 words
UNKNOWN = "<unk>"  # a word outside every vocabulary: what word dropout puts in a training caption


def _vocabulary() -> tuple[str, ...]:
    """Padding, unknown, the digits, the number words and the training templates' words: held-out phrasings may use
    words outside it, which the tokenizer reads as unknown (as any fixed vocabulary does with new words)."""
    filler = {w for t in TRAIN_TEMPLATES for w in words(re.sub(r"\{[lrLR]\}", " ", t))}
    return ("<pad>", UNKNOWN) + tuple(str(d) for d in range(10)) + NUMBER_WORDS + tuple(sorted(filler))


VOCAB = _vocabulary()


def digits_in(text: str) -> list[int]:
    """The digits a text names, as symbols or number words, in order: 'a seven right of 3' -> [7, 3]."""
    return [int(w) if w.isdigit() else NUMBER_WORDS.index(w) for w in words(text) if w.isdigit() or w in NUMBER_WORDS]


def caption(left: int, right: int, template: str, rng: np.random.Generator, word_dropout: float = 0.0) -> str:
    """One caption of the pair (left, right) in a template; {l} / {r} become a symbol or a word at random, and each
    other word becomes unknown with probability `word_dropout` (so a model learns to read past unknown words)."""
    def say(d: int) -> str:
        return str(d) if rng.random() < 0.5 else NUMBER_WORDS[d]
    text = template.format(l=say(left), r=say(right), L=NUMBER_WORDS[left], R=NUMBER_WORDS[right], dl=left, dr=right)
    if word_dropout <= 0:
        return text
    digits = set(NUMBER_WORDS) | {str(d) for d in range(10)}
    return " ".join(w if w in digits or rng.random() >= word_dropout else UNKNOWN for w in words(text))


def example_prompts(n: int) -> tuple[str, ...]:
    """n prompts for a sample grid: sample k asks for digits (k mod 10) left and (k // 10 + 3 k) mod 10 right, in
    the first training phrasing."""
    return tuple(TRAIN_TEMPLATES[0].format(l=k % 10, r=(k // 10 + 3 * k) % 10) for k in range(n))
