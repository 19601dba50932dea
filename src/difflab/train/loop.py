"""The training loop (Algorithm 1): deterministic per step, so a resumed run continues exactly."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from difflab.config import RunConfig, dump_yaml, to_dict
from difflab.data.dataset import ImageData
from difflab.errors import UserError
from difflab.losses.objective import training_loss
from difflab.prediction import NetworkDenoiser
from difflab.train.build import build_denoiser, build_network
from difflab.train.checkpoint import load_checkpoint, optimizer_from_flat, optimizer_to_flat, save_checkpoint, split_prefix
from difflab.train.ema import EMA, ema_beta
from difflab.train.progress import Progress

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class TrainState:
    """Everything that changes during training."""

    net: nn.Module
    ema: EMA
    opt: torch.optim.Optimizer
    step: int = 0
    images: int = 0
    seconds: float = 0.0  # wall-clock training time so far (across resumes)
    data_shape: tuple[int, ...] = ()  # shape of one training example, (C, H, W) or (D,)


@dataclass(frozen=True)
class TrainResult:
    steps: int
    images: int
    seconds: float
    final_loss: float
    stopped_by: str  # "images" or "time"


def step_seed(seed: int, step: int) -> int:
    """The seed of step `step`: t, eps, dropout and data order depend only on (seed, step)."""
    return (seed * 1_000_003 + step * 7919 + 12345) % (2**63)


class DataOrder:
    """An endless stream of shuffled indices: epoch e is a permutation seeded by (seed, e)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self._cache = n, seed, {}

    def perm(self, epoch: int) -> Tensor:
        if epoch not in self._cache:
            self._cache = {epoch: torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 31 + epoch))}
        return self._cache[epoch]

    def batch(self, step: int, size: int) -> Tensor:
        pos = torch.arange(step * size, (step + 1) * size)
        return torch.cat([self.perm(int(e))[pos[pos // self.n == e] % self.n] for e in (pos // self.n).unique()])


def lr_at(cfg: RunConfig, images: int) -> float:
    """Linear warm-up over warmup_images, then constant."""
    w = cfg.train.warmup_images
    return cfg.train.lr * (min(1.0, (images + cfg.train.batch_size) / w) if w > 0 else 1.0)


def resolve_device(name: str) -> torch.device:
    """'auto' is the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device is {name} but no CUDA GPU is visible: use train.device=cpu or auto")
    return torch.device(name)


def new_state(cfg: RunConfig) -> TrainState:
    torch.manual_seed(cfg.train.seed)
    net = build_network(cfg).to(resolve_device(cfg.train.device))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    return TrainState(net, EMA(net), opt)


def state_tensors(st: TrainState) -> tuple[dict[str, Tensor], dict]:
    opt_t, opt_meta = optimizer_to_flat(st.opt.state_dict())
    tensors = {**{f"model.{k}": v for k, v in st.net.state_dict().items()},
               **{f"ema.{k}": v for k, v in st.ema.model.state_dict().items()}, **opt_t}
    return tensors, opt_meta


def save_state(run_dir: Path, cfg: RunConfig, st: TrainState) -> None:
    tensors, opt_meta = state_tensors(st)
    meta = {"config": to_dict(cfg), "step": st.step, "images": st.images, "seconds": st.seconds,
            "data_shape": list(st.data_shape), "optimizer": opt_meta}
    save_checkpoint(run_dir / CHECKPOINT, tensors, meta)


def load_state(path: Path, cfg: RunConfig) -> TrainState:
    """Rebuild the training state of a checkpoint written with config `cfg`."""
    tensors, meta = load_checkpoint(path)
    st = new_state(cfg)
    try:
        st.net.load_state_dict(split_prefix(tensors, "model"))
        st.ema.model.load_state_dict(split_prefix(tensors, "ema"))
        st.opt.load_state_dict(optimizer_from_flat(tensors, meta["optimizer"]))
    except (RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"checkpoint {path} does not fit the model config ({str(e).splitlines()[0][:100]}): "
                        "use the config it was trained with") from None
    st.step, st.images, st.seconds = meta["step"], meta["images"], meta["seconds"]
    st.data_shape = tuple(meta.get("data_shape", ()))
    return st


def check_fit(cfg: RunConfig, net: nn.Module, data: ImageData) -> None:
    """Refuse data whose shape does not fit the network, or labels the network cannot take."""
    net.check_input(data.x[:1])
    nc = getattr(net.cfg, "num_classes", 0)
    if nc and (data.labels is None or data.num_classes > nc):
        raise UserError(f"the model is class-conditional with {nc} classes but the data has "
                        f"{'no labels' if data.labels is None else f'{data.num_classes} classes'}: set unet.num_classes")


def train(cfg: RunConfig, data: ImageData, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          log: Callable[[str], None] = print, progress: bool = True) -> TrainResult:
    """Train with Algorithm 1 until max_images or the time budget; checkpoints and metrics go to run_dir."""
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT
    if ckpt.exists() and not resume and not overwrite:
        raise UserError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    st = load_state(ckpt, cfg) if resume and ckpt.exists() else new_state(cfg)
    check_fit(cfg, st.net, data)  # before anything is written
    tc = cfg.train
    if resume and (st.images >= tc.max_images or (tc.minutes and st.seconds >= tc.minutes * 60)):
        raise UserError(f"the run already used its budget ({st.images} of train.max_images={tc.max_images} images, "
                        f"{st.seconds:.0f} s of train.minutes={tc.minutes}): pass a larger --max-images or --minutes")
    run_dir.mkdir(parents=True, exist_ok=True)
    st.data_shape = data.shape
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))  # the config in force, also after a resume
    if not (resume and ckpt.exists()):
        (run_dir / "metrics.jsonl").write_text("")
    else:
        log(f"resuming from {ckpt} at step {st.step} ({st.images} images)")
        _truncate_metrics(run_dir / "metrics.jsonl", st.step)
    denoiser: NetworkDenoiser = build_denoiser(cfg, st.net)
    order = DataOrder(len(data), tc.seed)
    use_labels = getattr(st.net.cfg, "num_classes", 0) > 0
    total_steps = math.ceil(tc.max_images / tc.batch_size)
    bar = Progress(total_steps, "train", "step", tc.log_every, st.step, log=log, enabled=progress,
                   budget_s=tc.minutes * 60, spent_s=st.seconds)
    next_ckpt = (st.images // tc.checkpoint_every_images + 1) * tc.checkpoint_every_images
    t_start, sec0, loss_v, stopped = time.time(), st.seconds, float("nan"), "images"
    metrics = open(run_dir / "metrics.jsonl", "a")
    st.net.train()
    diverged = False
    try:
        while st.images < tc.max_images:
            if tc.minutes and st.seconds >= tc.minutes * 60:
                stopped = "time"
                break
            loss_v, gnorm = _step(st, denoiser, data, order, use_labels, cfg)
            if not (math.isfinite(loss_v) and math.isfinite(gnorm)):
                diverged = True
                raise UserError(f"training diverged at step {st.step} (loss {loss_v}, gradient norm {gnorm}): lower "
                                f"train.lr; the last good checkpoint in {run_dir} is kept")
            st.step += 1
            st.images += tc.batch_size
            st.seconds = sec0 + time.time() - t_start
            bar.update(1, loss=loss_v)
            if st.step % tc.log_every == 0 or st.step == 1:
                metrics.write(json.dumps({"step": st.step, "images": st.images, "loss": loss_v, "grad_norm": gnorm,
                                          "lr": lr_at(cfg, st.images - tc.batch_size), "seconds": round(st.seconds, 3)}) + "\n")
                metrics.flush()
            if st.images >= next_ckpt:
                save_state(run_dir, cfg, st)
                next_ckpt += tc.checkpoint_every_images
    finally:
        metrics.close()
        bar.close()
        if not diverged:
            save_state(run_dir, cfg, st)  # also on Ctrl-C: nothing trained is lost
    log(f"trained {st.step} steps ({st.images} images) in {st.seconds:.0f}s; last loss {loss_v:.4f}")
    return TrainResult(st.step, st.images, st.seconds, loss_v, stopped)


def _step(st: TrainState, denoiser: NetworkDenoiser, data: ImageData, order: DataOrder,
          use_labels: bool, cfg: RunConfig) -> tuple[float, float]:
    """One step of Algorithm 1 on a batch; everything random is drawn from the step's own seed."""
    tc = cfg.train
    g = torch.Generator().manual_seed(step_seed(tc.seed, st.step))
    torch.manual_seed(step_seed(tc.seed, st.step) + 1)  # dropout
    dev = next(st.net.parameters()).device
    idx = order.batch(st.step, tc.batch_size)
    x0 = data.x[idx].to(dev)  # Algorithm 1, line 2
    cond = data.labels[idx].to(dev) if use_labels else None
    t = denoiser.schedule.sample_t(tc.batch_size, g).to(dev)  # line 3: t ~ U{1..T} / T, or U[t_min, 1] (DSM)
    eps = torch.randn(x0.shape, generator=g).to(dev)  # line 4 (drawn on the CPU: the same on any device)
    loss = training_loss(denoiser, denoiser.schedule, x0, t, eps, parameterization=tc.parameterization,  # line 5
                         objective=tc.objective, learn_variance=tc.learn_variance, hybrid_weight=tc.hybrid_weight,
                         cond=cond).mean()
    for group in st.opt.param_groups:
        group["lr"] = lr_at(cfg, st.images)
    st.opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(st.net.parameters(), tc.grad_clip if tc.grad_clip > 0 else float("inf"))
    if not (torch.isfinite(loss) and torch.isfinite(gnorm)):
        return float(loss.detach()), float(gnorm)  # the caller stops; weights and EMA stay as they were
    st.opt.step()
    half = tc.ema_half_life_images
    if tc.ema_rampup > 0:
        half = min(half, tc.ema_rampup * (st.images + tc.batch_size))
    st.ema.update(st.net, ema_beta(tc.batch_size, half))
    return float(loss.detach()), float(gnorm)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))
