"""Plots of a run: the loss curve, the forward process, a reverse trajectory, 2-D samples."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from difflab.data.dataset import to_uint8  # noqa: E402


def read_metrics(path: str | Path) -> list[dict]:
    p = Path(path)
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()] if p.exists() else []


def plot_loss(metrics: list[dict], path: str | Path) -> Path:
    """Training loss against images seen, raw and smoothed, log scale."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    metrics = [m for m in metrics if isinstance(m.get("loss"), (int, float))]  # skipped steps log a null loss
    if metrics:
        x = np.array([m["images"] for m in metrics])
        y = np.array([m["loss"] for m in metrics])
        ax.plot(x, y, alpha=0.35, lw=1, label="loss")
        k = max(1, len(y) // 8)
        if len(y) > k:
            ax.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, "valid"), lw=2, label=f"mean of {k}")
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("training images")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_strip(frames: list[Tensor], times: list[float], path: str | Path, title: str) -> Path:
    """Rows of images (one row per example) across columns of times: frames[j] is (N, C, H, W) at times[j]."""
    n = frames[0].shape[0]
    fig, axes = plt.subplots(n, len(frames), figsize=(1.1 * len(frames), 1.15 * n + 0.4), squeeze=False)
    for j, (f, t) in enumerate(zip(frames, times)):
        imgs = to_uint8(f)  # (N, C, H, W)
        for i in range(n):
            ax = axes[i][j]
            im = imgs[i].transpose(1, 2, 0)
            ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t={t:g}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_points(samples: Tensor, path: str | Path, reference: Tensor | None = None, title: str = "samples") -> Path:
    """Scatter of 2-D samples over an optional reference set."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if reference is not None:
        r = reference.detach().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=2, alpha=0.3, label="data")
    s = samples.detach().cpu().numpy()
    ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.6, label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_series(samples: Tensor, path: str | Path, reference: Tensor | None = None, n: int = 8,
                title: str = "samples") -> Path:
    """The first channel of n sequences (N, C, L), samples (left) beside data (right) on one scale."""
    cols = 2 if reference is not None else 1
    fig, axes = plt.subplots(1, cols, figsize=(5 * cols, 3.2), sharey=True, squeeze=False)
    for ax, x, name in zip(axes[0], [samples, reference], [title, "data"]):
        for row in x[:n, 0].detach().cpu().numpy():
            ax.plot(row, lw=1)
        ax.set_title(name)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def forward_frames(x0: Tensor, schedule, times: list[float], seed: int = 0) -> list[Tensor]:
    """x_t = alpha(t) x0 + sigma(t) eps at each time, with one fixed eps (seed: the diffusion kernel)."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    return [schedule.q_sample(x0, torch.full((x0.shape[0],), t, dtype=torch.float64), eps) for t in times]
