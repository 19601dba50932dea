"""Peer benchmark: difflab's MNIST demo vs diffusers' UNet2DModel + DDPMScheduler, same wall-clock, same judge."""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing difflab

from difflab.data.mnist import load_mnist  # noqa: E402
from difflab.eval.judge import JudgeScore, judge_samples, load_judge_meta, load_or_train_judge  # noqa: E402

DEFAULT_JSON = ROOT / "bench" / "out" / "mnist_vs_diffusers.json"
DEFAULT_PNG = ROOT / "docs" / "img" / "bench_mnist_difflab_vs_diffusers.png"
T = 1000  # diffusion steps for training (DDPM, linear betas 1e-4..0.02)
WARMUP_IMAGES = 5000  # linear lr warm-up, counted in images (as difflab's demo does)
SAMPLE_CHUNK = 256  # images per UNet call while sampling


@dataclass(frozen=True)
class RunResult:
    """One contender: its samples (N, 28, 28) uint8, judge score and cost."""

    name: str
    images: np.ndarray = field(repr=False)
    score: JudgeScore
    steps: int | None  # optimiser steps (None: the run did not report it)
    images_seen: int | None
    train_seconds: float | None
    sample_seconds: float | None
    wall_seconds: float | None  # everything the contender took, as measured here (None: reused run)
    details: dict[str, Any]


def log(msg: str) -> None:
    """Print a timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine_info() -> dict[str, Any]:
    """torch version, thread count, CPU model, core count, platform."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_avg_1m_5m_15m": [round(v, 2) for v in os.getloadavg()],
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def load_samples(run_dir: Path) -> np.ndarray:
    """Read run_dir/samples.npz key 'images' as uint8 (N, 28, 28)."""
    path = run_dir / "samples.npz"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (is {run_dir} a finished `difflab demo` run folder?)")
    with np.load(path, allow_pickle=False) as z:
        images = z["images"]
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]  # (N, 1, 28, 28) -> (N, 28, 28)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise SystemExit(f"error: {path}['images'] must be uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    return images


def reported_stats(run_dir: Path) -> dict[str, Any]:
    """Steps / images seen / seconds from a top-level JSON the demo wrote, else metrics.jsonl's last line."""
    keys = ("steps", "images_seen", "train_seconds", "sample_seconds")
    found: dict[str, Any] = {}
    for path in sorted(run_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found.update({k: data[k] for k in keys if k in data and k not in found})
    metrics = run_dir / "metrics.jsonl"
    if "steps" not in found and metrics.is_file():  # logged every log_every steps: a lower bound
        lines = [ln for ln in metrics.read_text().splitlines() if ln.strip()]
        try:
            last = json.loads(lines[-1]) if lines else {}
        except ValueError:
            last = {}
        for src, dst in (("step", "steps"), ("images", "images_seen"), ("seconds", "train_seconds")):
            if src in last:
                found.setdefault(dst, last[src])
        found["stats_source"] = "metrics.jsonl (last logged step)"
    return found


def run_difflab(run_dir: Path | None, minutes: float, seed: int, n: int, threads: int) -> RunResult:
    """Run `python -m difflab demo` (or reuse run_dir) and score its first n samples."""
    wall: float | None = None
    cmd: list[str] | None = None
    load_before = os.getloadavg()
    if run_dir is None:
        run_dir = ROOT / "bench" / "out" / f"difflab_demo_{time.strftime('%Y%m%d_%H%M%S')}"
        cmd = [sys.executable, "-m", "difflab", "demo", "--out", str(run_dir), "--minutes", str(minutes)]
        cmd += ["--seed", str(seed), "--set", f"sample.num_samples={n}"]
        cmd += ["--threads", str(threads)] if threads else []
        paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        log(f"difflab: {shlex.join(cmd)}")
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"error: difflab demo exited with status {proc.returncode}")
    else:
        log(f"difflab: reusing {run_dir}")
    images = load_samples(run_dir)
    if len(images) < n:
        log(f"difflab: only {len(images)} samples in {run_dir}; scoring both contenders on {len(images)}")
    images = images[:n]
    stats = reported_stats(run_dir)
    return RunResult(
        name="difflab",
        images=images,
        score=judge_samples(images),
        steps=stats.get("steps"),
        images_seen=stats.get("images_seen"),
        train_seconds=stats.get("train_seconds"),
        sample_seconds=stats.get("sample_seconds"),
        wall_seconds=None if wall is None else round(wall, 1),
        details={
            "run_dir": str(run_dir),
            "command": shlex.join(cmd) if cmd else None,
            "load_avg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)] if cmd else None,
            "stats_source": stats.get("stats_source", "run folder JSON" if stats else None),
        },
    )


def unet_config() -> dict[str, Any]:
    """A small UNet2DModel for native 28x28 (28 -> 14 -> 7), shaped like difflab's default demo U-Net."""
    return {
        "sample_size": 28,
        "in_channels": 1,
        "out_channels": 1,
        "block_out_channels": (32, 64, 64),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        "attention_head_dim": 64,  # one head at 64 channels
        "norm_num_groups": 32,
    }


def train_diffusers(minutes: float, batch_size: int, lr: float, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """Train UNet2DModel (epsilon prediction, DDPMScheduler) on MNIST for `minutes` of wall-clock; EMA weights out."""
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.training_utils import EMAModel

    images, _ = load_mnist("train")
    x_all = torch.from_numpy(images).float().div_(127.5).sub_(1.0).unsqueeze(1)  # (60000, 1, 28, 28) in [-1, 1]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    unet = UNet2DModel(**unet_config())
    scheduler = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear", prediction_type="epsilon")
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, WARMUP_IMAGES // batch_size)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)  # as in
    # diffusers' examples/unconditional_image_generation/train_unconditional.py
    n_params = sum(p.numel() for p in unet.parameters())
    log(f"diffusers: UNet2DModel {n_params / 1e6:.2f}M params, training for {minutes} min, batch {batch_size}")
    unet.train()
    steps, perm, pos, last_log = 0, torch.randperm(len(x_all), generator=gen), 0, 0.0
    budget = minutes * 60.0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget:
        if pos + batch_size > len(perm):
            perm, pos = torch.randperm(len(x_all), generator=gen), 0
        x0 = x_all[perm[pos : pos + batch_size]]  # (B, 1, 28, 28)
        pos += batch_size
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, T, (batch_size,), generator=gen)
        loss = F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        ema.step(unet.parameters())
        steps += 1
        if elapsed - last_log >= 30.0:
            log(f"diffusers: step {steps} loss {loss.item():.4f} ({elapsed:.0f}s)")
            last_log = elapsed
    train_seconds = time.perf_counter() - start
    log(f"diffusers: {steps} steps, {steps * batch_size} images in {train_seconds:.0f}s")
    ema.copy_to(unet.parameters())
    stats = {
        "steps": steps,
        "images_seen": steps * batch_size,
        "train_seconds": round(train_seconds, 1),
        "params": n_params,
        "final_loss": round(loss.item(), 4) if steps else None,
    }
    return unet.eval(), scheduler, stats


@torch.no_grad()
def sample_diffusers(unet: Any, scheduler: Any, n: int, inference_steps: int, seed: int) -> np.ndarray:
    """The DDPMPipeline loop (set_timesteps, unet, scheduler.step) in chunks; uint8 (n, 28, 28)."""
    gen = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(inference_steps)
    out = []
    for i in range(0, n, SAMPLE_CHUNK):
        x = torch.randn((min(SAMPLE_CHUNK, n - i), 1, 28, 28), generator=gen)  # (b, 1, 28, 28)
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x, generator=gen).prev_sample
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy())  # (b, 28, 28)
        log(f"diffusers: sampled {i + len(x)}/{n}")
    return np.concatenate(out)


def run_diffusers(args: argparse.Namespace, n: int) -> RunResult:
    """Train and sample the diffusers contender, then score it."""
    start, load_before = time.perf_counter(), os.getloadavg()
    unet, scheduler, stats = train_diffusers(args.minutes, args.batch_size, args.lr, args.seed)
    t0 = time.perf_counter()
    images = sample_diffusers(unet, scheduler, n, args.inference_steps, args.seed)
    sample_seconds = time.perf_counter() - t0
    import diffusers

    return RunResult(
        name="diffusers",
        images=images,
        score=judge_samples(images),
        steps=stats["steps"],
        images_seen=stats["images_seen"],
        train_seconds=stats["train_seconds"],
        sample_seconds=round(sample_seconds, 1),
        wall_seconds=round(time.perf_counter() - start, 1),
        details={
            "diffusers": diffusers.__version__,
            "load_avg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "unet_config": unet_config(),
            "params": stats["params"],
            "final_loss": stats["final_loss"],
            "scheduler": f"DDPMScheduler(T={T}, linear betas, epsilon, clip_sample=True)",
            "inference_steps": args.inference_steps,
            "optimizer": f"AdamW(lr={args.lr}, wd=0), warm-up {WARMUP_IMAGES} images, grad clip 1.0, EMA (warm-up)",
        },
    )


def grid(images: np.ndarray, max_cols: int = 8) -> np.ndarray:
    """Tile up to max_cols^2 images (N, 28, 28) into one (rows*30, cols*30) uint8 image with 1-pixel borders."""
    images = images[: max_cols * max_cols]
    cols = min(max_cols, int(np.ceil(np.sqrt(len(images)))))
    rows = -(-len(images) // cols)
    canvas = np.full((rows * 30, cols * 30), 128, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        canvas[r * 30 + 1 : r * 30 + 29, c * 30 + 1 : c * 30 + 29] = im
    return canvas


def write_png(results: list[RunResult], path: Path, minutes: float) -> None:
    """Side-by-side sample grids titled with each contender's judge score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = [grid(r.images) for r in results]
    aspect = max(g.shape[0] / g.shape[1] for g in grids)  # height / width
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 5 * aspect + 1.2), squeeze=False)
    for ax, r, g in zip(axes[0], results, grids):
        ax.imshow(g, cmap="gray", vmin=0, vmax=255)
        s = r.score
        ax.set_title(
            f"{r.name}: score {s.score:.3f}\nconfident {s.confident_share:.2f}, balance TV {s.balance_tv:.2f}, n={s.n}"
        )
        ax.axis("off")
    fig.suptitle(f"MNIST, {minutes:g} min CPU training each")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary(r: RunResult) -> dict[str, Any]:
    """JSON-ready view of a RunResult (no images)."""
    d = {k: v for k, v in asdict(r).items() if k not in ("images", "score")}
    d["score"] = {**asdict(r.score), "score": r.score.score}
    return d


def print_table(results: list[RunResult]) -> float | None:
    """Print one row per contender and the difflab/diffusers score ratio (returned)."""
    row = "{:<10} {:>6} {:>5} {:>5} {:>5} {:>7} {:>9} {:>8} {:>8}"
    print(row.format("contender", "score", "conf", "tv", "n", "steps", "images", "train s", "sample s"))
    for r in results:
        s = r.score
        cells = ("-" if v is None else v for v in (r.steps, r.images_seen, r.train_seconds, r.sample_seconds))
        print(row.format(r.name, f"{s.score:.3f}", f"{s.confident_share:.2f}", f"{s.balance_tv:.2f}", s.n, *cells))
    by = {r.name: r.score.score for r in results}
    if "difflab" not in by or "diffusers" not in by:
        return None
    if by["diffusers"] <= 0:
        print("score ratio difflab / diffusers = n/a (diffusers scored 0)")
        return None
    ratio = by["difflab"] / by["diffusers"]
    print(f"score ratio difflab / diffusers = {ratio:.3f}")
    return ratio


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock training budget per contender")
    p.add_argument("--samples", type=int, default=256, help="samples scored per contender (1000 DDPM steps for 64 "
                   "take ~6 min on one core)")
    p.add_argument("--batch-size", type=int, default=64, help="diffusers batch size; keep equal to difflab demo's")
    p.add_argument("--lr", type=float, default=2e-3, help="diffusers peak AdamW learning rate (difflab demo's)")
    p.add_argument("--inference-steps", type=int, default=250,
                   help="diffusers DDPM sampling steps (difflab demo samples with 250)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads for both contenders (0: torch's default); "
                   "run on an otherwise idle machine: a second busy process slows 2-thread torch several-fold")
    p.add_argument("--skip-difflab", type=Path, metavar="DIR", help="reuse this finished `difflab demo` run folder")
    p.add_argument("--skip-diffusers", action="store_true", help="score difflab only")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where the results JSON goes")
    p.add_argument("--png", type=Path, default=DEFAULT_PNG, help="where the side-by-side PNG goes")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.samples < 1 or args.batch_size < 1 or args.threads < 0:
        p.error("need --minutes > 0, --samples >= 1, --batch-size >= 1, --threads >= 0")
    if not 1 <= args.inference_steps <= T:
        p.error(f"need 1 <= --inference-steps <= {T}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run both contenders one after the other, score, write JSON + PNG, print the table."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # the difflab subprocess gets OMP_NUM_THREADS / MKL_NUM_THREADS
    load_or_train_judge(log=log)  # a cold judge cache trains here, outside every timed section
    n = args.samples
    results = [run_difflab(args.skip_difflab, args.minutes, args.seed, n, args.threads)]
    n = results[0].score.n  # both contenders are scored on the same N (balance_tv depends on N)
    if not args.skip_diffusers:
        results.append(run_diffusers(args, n))
    ratio = print_table(results)
    report = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": os.getcwd(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine_info(),
        "judge": load_judge_meta(),
        "results": {r.name: summary(r) for r in results},
        "score_ratio_difflab_over_diffusers": ratio,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    write_png(results, args.png, args.minutes)
    log(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
