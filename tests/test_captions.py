"""The two-digit canvas and its captions: the halves are the digits the caption names, phrasings vary, held-out
phrasings are apart from the training ones, and the tokenizer round-trips."""
import re

import numpy as np
import pytest
import torch

from difflab.conditions.language import (HELD_OUT_TEMPLATES, MAX_TOKENS, NUMBER_WORDS, TRAIN_TEMPLATES, UNKNOWN,
                                         VOCAB, caption)
from difflab.conditions.text import caption_tokenizer
from difflab.data.build import build_dataset
from difflab.data.captions import two_digit_canvas
from difflab.data.dataset import DataConfig
from difflab.data.mnist import load_mnist
from difflab.errors import UserError


def named(text: str) -> list[int]:
    """Digits a caption names, in the order it names them."""
    words = re.findall(r"[a-z]+|[0-9]", text)
    return [int(w) if w.isdigit() else NUMBER_WORDS.index(w) for w in words if w.isdigit() or w in NUMBER_WORDS]


def test_the_canvas_halves_are_the_captioned_digits():
    images, labels = load_mnist("test")
    c = two_digit_canvas(images[:500], labels[:500], 300, seed=1)
    assert c.images.shape == (300, 28, 56) and c.images.dtype == np.uint8
    sources = {im.tobytes(): int(y) for im, y in zip(images[:500], labels[:500])}
    for k in range(300):
        assert sources[c.images[k, :, :28].tobytes()] == c.left[k]
        assert sources[c.images[k, :, 28:].tobytes()] == c.right[k]
        said = named(c.captions[k])
        assert sorted(said) == sorted([c.left[k], c.right[k]])  # both digits, nothing else
    # order of mention varies: some captions name the right digit first (the model must read the words)
    first_right = sum(named(cap)[0] == r != l for cap, l, r in zip(c.captions, c.left, c.right))
    assert 10 < first_right < 150
    assert len(set(c.captions)) > 200  # varied phrasings and digits


def test_held_out_phrasings_are_apart_and_the_tokenizer_round_trips():
    tok = caption_tokenizer(MAX_TOKENS)
    pad, unk = tok.pad, tok.unk
    assert not set(TRAIN_TEMPLATES) & set(HELD_OUT_TEMPLATES)
    for template in TRAIN_TEMPLATES:  # every training word is in the vocabulary
        text = template.format(l="3", r="seven", L="three", R="seven")
        ids = tok.encode(text)
        assert ids.shape == (16,) and ids.dtype == torch.long and unk not in ids.tolist()
        assert tok.decode(ids) == " ".join(re.findall(r"[a-z]+|[0-9]", text))
    held = {w for t in HELD_OUT_TEMPLATES for w in tok.unknown(t.format(l=1, r=2, L="one", R="two", dl=1, dr=2))}
    # the held-out phrasings bring new words, read as unknown by the word tokenizer
    assert held == {"beside", "first", "in", "leftmost", "order", "placed", "rightmost", "sits", "that"}
    assert len(HELD_OUT_TEMPLATES) >= 8
    assert tok.encode("a 3 next to a zebra").tolist()[5] == unk and tok.encode("3 7").tolist()[2:] == [pad] * 14
    assert len(VOCAB) == len(set(VOCAB))
    with pytest.raises(UserError, match="no words"):
        tok.encode(" ,. ")
    with pytest.raises(UserError, match="at most 16"):
        tok.encode("3 " * 17)


def test_word_dropout_keeps_the_digits_and_the_pairs_dataset_matches_its_labels():
    rng = np.random.default_rng(0)
    dropped = [caption(3, 7, TRAIN_TEMPLATES[2], rng, word_dropout=0.5) for _ in range(200)]
    assert all("three" in c and "seven" in c for c in dropped)
    share = np.mean([w == UNKNOWN for c in dropped for w in c.split() if w not in ("three", "seven")])
    assert 0.4 < share < 0.6
    tok = caption_tokenizer(MAX_TOKENS)
    assert tok.encode(dropped[0]).max() < len(VOCAB)
    data = build_dataset(DataConfig(name="mnist_pairs", split="test", limit=40, seed=3))
    assert data.x.shape == (40, 1, 28, 56) and len(data.captions) == 40 and data.num_classes == 100
    for cap, y in zip(data.captions, data.labels.tolist()):
        named_digits = named(cap)
        assert sorted(named_digits) == sorted([y // 10, y % 10])


def test_the_held_out_digit_pairs_never_appear_on_a_training_canvas():
    from difflab.conditions.language import HELD_OUT_PAIRS

    data = build_dataset(DataConfig(name="mnist_pairs", heldout_pairs=True, limit=3000))
    seen = set(data.labels.tolist())
    assert not seen & {10 * a + b for a, b in HELD_OUT_PAIRS} and len(seen) == 90
    with pytest.raises(UserError, match="data.heldout_pairs applies to data.name=mnist_pairs"):
        DataConfig(name="mnist", heldout_pairs=True)
