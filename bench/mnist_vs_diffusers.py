"""Peer benchmark: difflab's MNIST demo recipe vs diffusers' UNet2DModel + DDPMScheduler, same wall-clock training,
sampled at the same NFE (difflab: its automatic sampler; diffusers: DPMSolverMultistepScheduler), scored by the
judge classifier and by the standard Inception FID against the MNIST test set with a spread over seeds.

  .venv/bin/python bench/mnist_vs_diffusers.py --minutes 10        # ~50 min on 2 cores (make bench)
"""
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
from mnist_recipes import cpu_flags  # noqa: E402

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
    sets: list = field(default_factory=list, repr=False)  # every seed's samples (N, 28, 28) uint8
    early_sets: list = field(default_factory=list, repr=False)  # the same seeds from an early checkpoint


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
            if isinstance(data.get("seconds"), dict) and "training" in data["seconds"]:  # train's summary.json
                found.setdefault("train_seconds", data["seconds"]["training"])
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


def run_difflab(run_dir: Path | None, args: argparse.Namespace, n: int) -> RunResult:
    """Train the demo recipe for args.minutes with `python -m difflab train` (or reuse run_dir), then draw
    args.seeds sets of n samples at args.nfe NFE (sample.sampler = auto) from the final EMA weights and from the
    first checkpoint (an early model, for the FID ordering check); sampling timed here."""
    import difflab
    from difflab.config import build_config, dump_yaml
    from difflab.data.dataset import to_uint8
    from difflab.demo import DEMO
    from difflab.train.precision import resolve_precision

    wall: float | None = None
    cmd: list[str] | None = None
    load_before = os.getloadavg()
    if run_dir is None:
        run_dir = ROOT / "bench" / "out" / f"difflab_{time.strftime('%Y%m%d_%H%M%S')}"
        run_dir.mkdir(parents=True)
        recipe = run_dir.parent / f"{run_dir.name}_recipe.yaml"
        recipe.write_text(dump_yaml(build_config(None, [], base=DEMO)))
        cmd = [sys.executable, "-m", "difflab", "train", "--config", str(recipe), "--out", str(run_dir),
               "--minutes", str(args.minutes), "--sample", "0", "--set", f"train.seed={args.seed}",
               "--set", "train.keep_checkpoints=1000"]
        paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
        if args.threads:
            env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        log(f"difflab: {shlex.join(cmd)}")
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"error: difflab train exited with status {proc.returncode}")
    else:
        log(f"difflab: reusing {run_dir}")
    stats = reported_stats(run_dir)
    pipe = difflab.load(run_dir)
    plan = pipe.plan(pipe.sample_config(n, nfe=args.nfe, batch_size=SAMPLE_CHUNK), log=lambda s: None)

    def draw(p: difflab.Pipeline, seed: int) -> np.ndarray:  # the planned sampler, grid and cost; only the seed changes
        return to_uint8(p.draw(plan.with_seed(seed)))[:, 0]

    t0 = time.perf_counter()
    sets = [draw(pipe, 1000 * (k + 1)) for k in range(args.seeds)]
    sample_seconds = (time.perf_counter() - t0) / args.seeds
    first = sorted((run_dir / "checkpoints").glob("step-*.safetensors"), key=lambda f: int(f.stem.split("-")[1]))
    early_sets = [draw(difflab.load(first[0]), 1000 * (k + 1)) for k in range(args.seeds)] if first else []
    return RunResult(
        name="difflab",
        images=sets[0],
        score=judge_samples(sets[0]),
        steps=stats.get("steps"),
        images_seen=stats.get("images_seen"),
        train_seconds=stats.get("train_seconds"),
        sample_seconds=round(sample_seconds, 1),
        wall_seconds=None if wall is None else round(wall, 1),
        details={
            "run_dir": str(run_dir),
            "command": shlex.join(cmd) if cmd else None,
            "sampler": f"{plan.config.sampler} at {plan.nfe} NFE on the {plan.grid_name} grid (EMA weights)",
            "params": sum(p.numel() for p in pipe.net.parameters()),
            "precision": resolve_precision(pipe.cfg.train.precision, torch.device("cpu")),
            "load_avg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)] if cmd else None,
            "stats_source": stats.get("stats_source", "run folder JSON" if stats else None),
            "early_checkpoint": first[0].name if first else None,
        },
        sets=sets,
        early_sets=early_sets,
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


def native_bf16() -> bool:
    """bf16 autocast only where the CPU runs it natively (as difflab's train.precision=auto decides)."""
    from difflab.train.precision import native_bf16_cpu

    return native_bf16_cpu()


def train_diffusers(minutes: float, batch_size: int, lr: float, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """Train UNet2DModel (epsilon prediction, DDPMScheduler) on MNIST for `minutes` of wall-clock; EMA weights out;
    the forward pass under bf16 autocast where the CPU has native bf16 (as train_unconditional's mixed precision)."""
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
    bf16 = native_bf16()
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
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = unet(scheduler.add_noise(x0, noise, t), t).sample
        loss = F.mse_loss(pred.float(), noise)
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
        "precision": "bf16" if bf16 else "fp32",
    }
    return unet.eval(), scheduler, stats


@torch.no_grad()
def sample_diffusers(unet: Any, scheduler: Any, n: int, inference_steps: int, seed: int) -> np.ndarray:
    """The pipeline loop (set_timesteps, unet, scheduler.step) with DPMSolverMultistepScheduler (DPM-Solver++ 2M,
    diffusers' fast default) built from the training scheduler's config, in chunks; uint8 (n, 28, 28)."""
    from diffusers import DPMSolverMultistepScheduler

    solver = DPMSolverMultistepScheduler.from_config(scheduler.config)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, SAMPLE_CHUNK):
        solver.set_timesteps(inference_steps)  # the scheduler keeps its step index: reset it for every chunk
        x = torch.randn((min(SAMPLE_CHUNK, n - i), 1, 28, 28), generator=gen)  # (b, 1, 28, 28)
        for t in solver.timesteps:
            x = solver.step(unet(x, t).sample, t, x).prev_sample
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy())  # (b, 28, 28)
    return np.concatenate(out)


def run_diffusers(args: argparse.Namespace, n: int) -> RunResult:
    """Train and sample the diffusers contender, then score it."""
    start, load_before = time.perf_counter(), os.getloadavg()
    unet, scheduler, stats = train_diffusers(args.minutes, args.batch_size, args.lr, args.seed)
    t0 = time.perf_counter()
    sets = [sample_diffusers(unet, scheduler, n, args.nfe, 1000 * (k + 1)) for k in range(args.seeds)]
    sample_seconds = (time.perf_counter() - t0) / args.seeds
    import diffusers

    return RunResult(
        name="diffusers",
        images=sets[0],
        score=judge_samples(sets[0]),
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
            "precision": stats["precision"],
            "scheduler": f"DDPMScheduler(T={T}, linear betas, epsilon) for training; DPMSolverMultistepScheduler "
                         f"at {args.nfe} steps for sampling",
            "optimizer": f"AdamW(lr={args.lr}, wd=0), warm-up {WARMUP_IMAGES} images, grad clip 1.0, EMA (warm-up)",
        },
        sets=sets,
    )


def fid_rows(results: list[RunResult], seed: int) -> dict[str, Any]:
    """Inception FID against the MNIST test set (10,000 images; features cached by content hash): each contender's
    seeds (mean and s.d. over seeds), difflab's early checkpoint, and held-out real training images of the same
    count (the floor at this n)."""
    from difflab.eval.features import get_extractor
    from difflab.eval.quality import evaluate_images

    ref, _ = load_mnist("test")
    extractor = get_extractor("inception")
    n = len(results[0].sets[0])
    train, _ = load_mnist("train")
    pick = np.random.default_rng(seed).permutation(len(train))
    real = [train[pick[k * n:(k + 1) * n]] for k in range(len(results[0].sets))]
    groups = {"real (MNIST train)": real, **{r.name: r.sets for r in results}}
    if results[0].early_sets:
        groups[f"difflab early ({results[0].details.get('early_checkpoint')})"] = results[0].early_sets
    out = {}
    for name, sets in groups.items():
        row = evaluate_images(sets, ref, extractor, ("fid",), "mnist test", log=log).rows[0]
        out[name] = {"fid": round(row.value, 2), "sd": round(row.spread, 2), "n": row.n, "n_ref": row.n_ref,
                     "how": row.how}
        log(f"FID {name}: {row.value:.2f} +- {row.spread:.2f} ({row.n} samples, {row.how})")
    return out


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
    d = {k: v for k, v in asdict(r).items() if k not in ("images", "score", "sets", "early_sets")}
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
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget per contender")
    p.add_argument("--samples", type=int, default=1000, help="samples per seed and contender")
    p.add_argument("--seeds", type=int, default=2, help="sampling seeds (the FID's spread is over them)")
    p.add_argument("--nfe", type=int, default=20, help="network evaluations per sample for both contenders")
    p.add_argument("--no-fid", action="store_true", help="judge score only (no Inception features)")
    p.add_argument("--batch-size", type=int, default=64, help="diffusers batch size; keep equal to difflab demo's")
    p.add_argument("--lr", type=float, default=2e-3, help="diffusers peak AdamW learning rate (difflab demo's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads for both contenders (0: torch's default); "
                   "run on an otherwise idle machine: a second busy process slows 2-thread torch several-fold")
    p.add_argument("--skip-difflab", type=Path, metavar="DIR", help="reuse this trained difflab run folder")
    p.add_argument("--skip-diffusers", action="store_true", help="score difflab only")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where the results JSON goes")
    p.add_argument("--png", type=Path, default=DEFAULT_PNG, help="where the side-by-side PNG goes")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.samples < 2 or args.batch_size < 1 or args.threads < 0 or args.seeds < 1:
        p.error("need --minutes > 0, --samples >= 2, --batch-size >= 1, --threads >= 0, --seeds >= 1")
    if not 2 <= args.nfe <= T:
        p.error(f"need 2 <= --nfe <= {T}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run both contenders one after the other, score, write JSON + PNG, print the table."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # the difflab subprocess gets OMP_NUM_THREADS / MKL_NUM_THREADS
    load_or_train_judge(log=log)  # a cold judge cache trains here, outside every timed section
    n = args.samples
    results = [run_difflab(args.skip_difflab, args, n)]
    if not args.skip_diffusers:
        results.append(run_diffusers(args, n))
    ratio = print_table(results)
    fid = None if args.no_fid else fid_rows(results, args.seed)
    if fid and "diffusers" in fid:
        print(f"FID ratio difflab / diffusers = {fid['difflab']['fid'] / fid['diffusers']['fid']:.3f}")
    report = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": os.getcwd(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {**machine_info(), "cpu_flags": cpu_flags()},
        "judge": load_judge_meta(),
        "results": {r.name: summary(r) for r in results},
        "score_ratio_difflab_over_diffusers": ratio,
        "fid_inception_vs_mnist_test": fid,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    write_png(results, args.png, args.minutes)
    log(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
