"""The two-digit canvas and its captions: the halves are the digits the caption names, phrasings vary, held-out
phrasings are apart from the training ones, and the tokenizer round-trips."""
import re

import numpy as np
import pytest
import torch

from difflab.data.captions import (HELD_OUT_TEMPLATES, NUMBER_WORDS, PAD, TRAIN_TEMPLATES, UNK, VOCAB, detokenize,
                                   tokenize, two_digit_canvas)
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
    assert not set(TRAIN_TEMPLATES) & set(HELD_OUT_TEMPLATES)
    for template in TRAIN_TEMPLATES + HELD_OUT_TEMPLATES:
        text = template.format(l="3", r="seven", L="three", R="seven")
        ids = tokenize(text)
        assert ids.shape == (16,) and ids.dtype == torch.long and UNK not in ids.tolist()
        assert detokenize(ids) == " ".join(re.findall(r"[a-z]+|[0-9]", text))
    assert tokenize("a 3 next to a zebra").tolist()[5] == UNK and tokenize("3 7").tolist()[2:] == [PAD] * 14
    assert len(VOCAB) == len(set(VOCAB))
    with pytest.raises(UserError, match="no words"):
        tokenize(" ,. ")
    with pytest.raises(UserError, match="at most 16"):
        tokenize("3 " * 17)
