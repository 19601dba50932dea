"""An MNIST classifier that scores generated digits: trained once per machine, cached as safetensors + JSON."""
from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

from difflab.data.mnist import cache_dir, load_mnist
from difflab.errors import UserError

ARCH = "judge-cnn-v1"  # bump when the network or its input scaling changes: old caches are then retrained
SEED = 0
EPOCHS = 2
BATCH_SIZE = 128
LR = 2e-3
CONFIDENT = 0.9  # a sample is confident when its max softmax probability exceeds this


class JudgeNet(nn.Module):
    """Three 3x3 conv blocks + two linear layers (~130k params)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 3, 3)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 3 * 3, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: Tensor) -> Tensor:
        """Map images (B, 1, 28, 28) in [0, 1] to logits (B, 10)."""
        return self.head(self.features(x))


@dataclass(frozen=True)
class JudgeScore:
    """How digit-like and class-balanced a batch of samples looks to the judge.

    score = confident_share * (1 - balance_tv): 1 for confident, perfectly balanced digits; 0 when no sample
    is confident or every sample lands in one class (balance_tv = 0.9); the 10k MNIST test images score ~0.95.
    balance_tv is noisy for small N (balanced draws of 16 give ~0.3), so compare scores at equal N.
    """

    confident_share: float  # share of samples whose max softmax probability > 0.9
    class_histogram: tuple[int, ...]  # (10,) counts of predicted classes (argmax), all samples
    balance_tv: float  # total variation distance of the predicted-class histogram from uniform, in [0, 0.9]
    n: int

    @property
    def score(self) -> float:
        """confident_share * (1 - balance_tv), in [0, 1], higher is better."""
        return self.confident_share * (1.0 - self.balance_tv)


def judge_dir() -> Path:
    """Where the cached judge lives: cache_dir() / 'judge'."""
    return cache_dir() / "judge"


def _to_input(images: np.ndarray) -> Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)


@torch.no_grad()
def _predict_probs(model: nn.Module, images: np.ndarray, batch: int = 128) -> Tensor:
    """Softmax probabilities (N, 10) for uint8 images (N, 28, 28)."""
    model.eval()
    chunks = [F.softmax(model(_to_input(images[i : i + batch])), dim=1) for i in range(0, len(images), batch)]
    return torch.cat(chunks)


def _accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy on uint8 images (N, 28, 28) with int labels (N,)."""
    pred = _predict_probs(model, images).argmax(dim=1).numpy()
    return float((pred == labels).mean())


def train_judge(
    epochs: int = EPOCHS, seed: int = SEED, max_steps: int | None = None, log: Callable[[str], None] = print
) -> tuple[JudgeNet, dict]:
    """Train a JudgeNet on the MNIST train split deterministically; return it and its metadata."""
    images, labels = load_mnist("train")
    test_images, test_labels = load_mnist("test")
    x_all, y_all = _to_input(images), torch.from_numpy(labels)  # (60000, 1, 28, 28), (60000,)
    steps_per_epoch = len(x_all) // BATCH_SIZE
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        model = JudgeNet()
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / total)  # linear decay to 0
        step = 0
        model.train()
        while step < total:
            perm = torch.randperm(len(x_all), generator=gen)
            for i in range(steps_per_epoch):
                if step >= total:
                    break
                idx = perm[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]
                loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                if step % 200 == 0 or step == total:
                    log(f"judge: step {step}/{total} loss {loss.item():.4f} ({time.perf_counter() - start:.0f}s)")
    train_seconds = time.perf_counter() - start
    acc = _accuracy(model, test_images, test_labels)
    log(f"judge: test accuracy {acc:.4f} after {step} steps in {train_seconds:.0f}s")
    meta = {
        "arch": ARCH,
        "test_accuracy": acc,
        "seed": seed,
        "epochs": epochs,
        "steps": step,
        "batch_size": BATCH_SIZE,
        "train_seconds": round(train_seconds, 1),
        "torch": torch.__version__,
    }
    return model, meta


def _save(model: nn.Module, meta: dict, root: Path) -> None:
    """Write weights and sidecar atomically, weights first so a sidecar always has its weights."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"judge.tmp{os.getpid()}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, root / "judge.safetensors")
    tmp_json = root / f"judge.tmp{os.getpid()}.json"
    tmp_json.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp_json, root / "judge.json")


def _load(root: Path) -> tuple[JudgeNet, dict] | None:
    """Return the cached judge and its metadata, or None if missing, damaged or of another architecture."""
    try:
        meta = json.loads((root / "judge.json").read_text())
        if meta.get("arch") != ARCH:
            return None
        model = JudgeNet()
        model.load_state_dict(load_file(str(root / "judge.safetensors")))
    except (OSError, ValueError, RuntimeError, KeyError):
        return None
    return model.eval(), meta


def load_judge_meta() -> dict | None:
    """The cached judge's sidecar (test_accuracy, seed, epochs, ...) or None if there is no usable cache."""
    loaded = _load(judge_dir())
    return None if loaded is None else loaded[1]


def load_or_train_judge(log: Callable[[str], None] = print) -> nn.Module:
    """Return the cached judge (eval mode), training and caching it first if needed (~1-3 min on 2 CPU cores)."""
    root = judge_dir()
    loaded = _load(root)
    if loaded is not None:
        return loaded[0]
    log(f"judge: no usable cache in {root}; training an MNIST classifier ({EPOCHS} epochs)")
    model, meta = train_judge(log=log)
    _save(model, meta, root)
    return model.eval()


@functools.lru_cache(maxsize=1)
def _default_judge() -> nn.Module:
    """The process-wide judge, loaded (or trained) on first use."""
    return load_or_train_judge()


def judge_samples(images_uint8: np.ndarray, judge: nn.Module | None = None) -> JudgeScore:
    """Score uint8 samples (N, 28, 28) with the judge (default: the cached one)."""
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) == 0:
        raise UserError(
            f"judge_samples needs uint8 images of shape (N, 28, 28) with N >= 1, got {images.dtype} {images.shape}"
        )
    probs = _predict_probs(judge if judge is not None else _default_judge(), images)  # (N, 10)
    conf, pred = probs.max(dim=1)
    hist = np.bincount(pred.numpy(), minlength=10)  # (10,)
    n = len(images)
    return JudgeScore(
        confident_share=float((conf > CONFIDENT).numpy().mean()),
        class_histogram=tuple(int(c) for c in hist),
        balance_tv=float(0.5 * np.abs(hist / n - 0.1).sum()),
        n=n,
    )
