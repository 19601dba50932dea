"""The MNIST judge: real digits score high, noise and blank images score low."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from difflab.data.mnist import load_mnist
from difflab.errors import UserError
from difflab.eval import judge as J

@pytest.fixture(scope="session")
def test_split() -> tuple[np.ndarray, np.ndarray]:
    """MNIST test images (10000, 28, 28) and labels."""
    return load_mnist("test")


def test_accuracy_on_test_split(judge, test_split) -> None:
    model, meta = judge
    acc = J._accuracy(model, *test_split)
    if meta is not None:
        assert acc >= 0.985
        assert meta["test_accuracy"] == pytest.approx(acc, abs=1e-4)  # the sidecar is honest
    else:
        assert acc >= 0.97


def test_real_digits_score_high(judge, test_split) -> None:
    s = J.judge_samples(test_split[0][:2000], judge=judge[0])
    assert s.n == 2000 and sum(s.class_histogram) == 2000
    assert s.confident_share > 0.9
    assert s.balance_tv < 0.1
    assert s.score > 0.8


@pytest.mark.parametrize("kind", ["uniform_noise", "gaussian_noise", "blank", "white", "pixel_shuffled"])
def test_non_digits_score_low(judge, test_split, kind: str) -> None:
    rng = np.random.default_rng(0)
    n = 500
    images = {
        "uniform_noise": lambda: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "gaussian_noise": lambda: np.clip(rng.normal(0, 80, (n, 28, 28)), 0, 255).astype(np.uint8),
        "blank": lambda: np.zeros((n, 28, 28), np.uint8),
        "white": lambda: np.full((n, 28, 28), 255, np.uint8),
        "pixel_shuffled": lambda: rng.permuted(test_split[0][:n].reshape(n, -1), axis=1).reshape(n, 28, 28),
    }[kind]()
    s = J.judge_samples(images, judge=judge[0])
    assert s.score < 0.2
    assert s.balance_tv > 0.5


def test_one_class_is_penalised_by_balance(judge, test_split) -> None:
    images, labels = test_split
    s = J.judge_samples(images[labels == 3][:500], judge=judge[0])
    assert s.confident_share > 0.9
    assert s.balance_tv > 0.8
    assert s.score < 0.2


def test_histogram_and_tv_arithmetic() -> None:
    class Fixed(nn.Module):
        """Predicts class (index mod 2) with probability ~1."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = torch.full((len(x), 10), -50.0)  # (B, 10)
            logits[torch.arange(len(x)), torch.arange(len(x)) % 2] = 50.0
            return logits

    s = J.judge_samples(np.zeros((10, 28, 28), np.uint8), judge=Fixed())
    assert s.class_histogram == (5, 5, 0, 0, 0, 0, 0, 0, 0, 0)
    assert s.balance_tv == pytest.approx(0.8)
    assert s.confident_share == 1.0
    assert s.score == pytest.approx(0.2)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 28, 28), np.float32), np.zeros((4, 32, 32), np.uint8), np.zeros((0, 28, 28), np.uint8)]
)
def test_bad_input_is_a_user_error(bad: np.ndarray) -> None:
    with pytest.raises(UserError):
        J.judge_samples(bad, judge=nn.Identity())
