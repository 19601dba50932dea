"""The training state: what a checkpoint holds (network, EMA, optimizer, loss scaler, counters, generator states),
how it is built, written out and restored, and the clocks (learning rate, EMA half-life) that run on images seen."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import Tensor, nn

from difflab.config import RunConfig, to_dict
from difflab.data.dataset import DataSpec
from difflab.errors import UserError
from difflab.train.build import build_network
from difflab.train.checkpoint import load_checkpoint, optimizer_from_flat, optimizer_to_flat, split_prefix
from difflab.train.distributed import World, resolve_device
from difflab.train.ema import EMA
from difflab.train.precision import grad_scaler


@dataclass
class TrainState:
    """Everything that changes during training."""

    net: nn.Module
    ema: EMA
    opt: torch.optim.Optimizer | None  # None: loaded to sample or evaluate, not to train
    scaler: torch.amp.GradScaler
    step: int = 0
    images: int = 0  # images seen: also the position in the data stream and the clock of the LR and EMA schedules
    seconds: float = 0.0  # wall-clock training time so far (across resumes)
    bad_in_a_row: int = 0  # consecutive skipped (non-finite) steps
    data_spec: DataSpec | None = None  # what the training data is (shape, 8-bit or not, range, classes)
    rng: dict[str, Tensor] = field(default_factory=dict)  # every rank's generator states, from the checkpoint


WARMUP_SHARE, WARMUP_MAX = 0.05, 5000  # unset train.warmup_images: 5% of the planned images, at most 5000
EMA_SHARE, EMA_MAX = 0.1, 50_000  # unset train.ema_half_life_images: 10% of the planned images, at most 50000


def budget_defaults(cfg: RunConfig, planned: int) -> RunConfig:
    """Fill the unset warm-up and EMA half-life from the images the run plans to see (written to its config, so a
    resume keeps them)."""
    tc = cfg.train
    warm = tc.warmup_images if tc.warmup_images is not None else min(WARMUP_MAX, round(WARMUP_SHARE * planned))
    half = tc.ema_half_life_images if tc.ema_half_life_images is not None else \
        max(tc.batch_size, min(EMA_MAX, round(EMA_SHARE * planned)))
    return replace(cfg, train=replace(tc, warmup_images=warm, ema_half_life_images=half))


def lr_at(cfg: RunConfig, images: int) -> float:
    """Linear warm-up over warmup_images, then constant."""
    w = cfg.train.warmup_images
    return cfg.train.lr * (min(1.0, (images + cfg.train.batch_size) / w) if w > 0 else 1.0)


def ema_half_life(cfg: RunConfig, images: int) -> float:
    """The EMA half-life in images at `images` seen: min(half-life, rampup * images) early on."""
    tc = cfg.train
    return min(tc.ema_half_life_images, tc.ema_rampup * (images + tc.batch_size)) if tc.ema_rampup > 0 \
        else tc.ema_half_life_images


def new_state(cfg: RunConfig, device: torch.device | None = None, optimizer: bool = True) -> TrainState:
    """A fresh state; without `optimizer` the networks alone (no AdamW, whose first use imports torch's compiler)."""
    torch.manual_seed(cfg.train.seed)  # every rank builds the same initial network
    device = device or resolve_device(cfg.train.device)
    net = build_network(cfg).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                            foreach=True) if optimizer else None  # one kernel per op for all tensors (CPU too)
    return TrainState(net, EMA(net), opt, grad_scaler(cfg.train.precision, device))


def state_tensors(st: TrainState) -> tuple[dict[str, Tensor], dict]:
    opt_t, opt_meta = optimizer_to_flat(st.opt.state_dict())
    tensors = {**{f"model.{k}": v for k, v in st.net.state_dict().items()},
               **{f"ema.{k}": v for k, v in st.ema.model.state_dict().items()}, **opt_t, **st.rng}
    return tensors, opt_meta


def checkpoint_meta(cfg: RunConfig, st: TrainState, world: World, opt_meta: dict) -> dict:
    return {"config": to_dict(cfg), "step": st.step, "images": st.images, "seconds": st.seconds,
            "data": st.data_spec.to_dict() if st.data_spec else None, "optimizer": opt_meta, "grad_scaler": st.scaler.state_dict(),
            "bad_in_a_row": st.bad_in_a_row, "world_size": world.size, "data_position": st.images,
            "lr": lr_at(cfg, st.images)}


def gather_rng(world: World) -> dict[str, Tensor]:
    """Every rank's CPU (and CUDA) generator state, as uint8 tensors 'rng.cpu.<rank>' (collective)."""
    out = {f"rng.cpu.{r}": s.cpu() for r, s in enumerate(world.gather(torch.get_rng_state().to(world.device)))}
    if world.device.type == "cuda":
        cuda = torch.cuda.get_rng_state(world.device).to(world.device)
        out.update({f"rng.cuda.{r}": s.cpu() for r, s in enumerate(world.gather(cuda))})
    return out


def restore_rng(st: TrainState, world: World) -> None:
    """Each rank's own generator states back, when the checkpoint was written by as many ranks."""
    if sum(k.startswith("rng.cpu.") for k in st.rng) != world.size:
        return
    torch.set_rng_state(st.rng[f"rng.cpu.{world.rank}"])
    if world.device.type == "cuda" and f"rng.cuda.{world.rank}" in st.rng:
        torch.cuda.set_rng_state(st.rng[f"rng.cuda.{world.rank}"], world.device)


def restore(tensors: dict[str, Tensor], meta: dict, cfg: RunConfig, path: Path,
            device: torch.device | None = None, optimizer: bool = True) -> TrainState:
    """Rebuild the training state of a checkpoint written with config `cfg` (the networks alone without
    `optimizer`)."""
    st = new_state(cfg, device, optimizer)
    try:
        st.net.load_state_dict(split_prefix(tensors, "model"))
        st.ema.model.load_state_dict(split_prefix(tensors, "ema"))
        if st.opt is not None:
            st.opt.load_state_dict(optimizer_from_flat(tensors, meta["optimizer"]))
    except UserError:  # said by the network itself (a pretrained text encoder that changed)
        raise
    except (RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"checkpoint {path} does not fit the model config ({_misfit(cfg, meta, e)}): "
                        "use the config it was trained with") from None
    if meta.get("grad_scaler") and st.scaler.is_enabled():
        st.scaler.load_state_dict(meta["grad_scaler"])
    st.step, st.images, st.seconds = meta["step"], meta["images"], meta["seconds"]
    st.bad_in_a_row = meta.get("bad_in_a_row", 0)
    st.data_spec = DataSpec.from_dict(meta["data"]) if meta.get("data") else None
    st.rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    return st


def _misfit(cfg: RunConfig, meta: dict, err: Exception) -> str:
    """What differs between the network settings asked for and the checkpoint's, else torch's first clue."""
    saved, now = meta.get("config") or {}, to_dict(cfg)
    diffs = [f"{sec}.{k} is {v!r} here but {saved[sec].get(k)!r} in the checkpoint"
             for sec in ("unet", "mlp", "text") if sec in (now["arch"], "text") and isinstance(saved.get(sec), dict)
             for k, v in now[sec].items() if saved[sec].get(k, v) != v]
    if saved.get("arch", now["arch"]) != now["arch"]:
        diffs.insert(0, f"arch is {now['arch']!r} here but {saved['arch']!r} in the checkpoint")
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return "; ".join(diffs[:3]) or (lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__)[:160]


def load_state(path: Path, cfg: RunConfig) -> TrainState:
    """A checkpoint's networks, counters and data description, to sample or evaluate (no optimizer)."""
    tensors, meta = load_checkpoint(path)
    return restore(tensors, meta, cfg, path, optimizer=False)


def save_state(store, cfg: RunConfig, st: TrainState, world: World) -> None:
    """Every rank hands in its RNG state; rank 0 writes. A failed write keeps the last good checkpoint."""
    st.rng = gather_rng(world)
    if not world.main:
        return
    tensors, opt_meta = state_tensors(st)
    try:
        store.save(st.step, tensors, checkpoint_meta(cfg, st, world, opt_meta))
    except (OSError, SafetensorError) as e:
        last = f"the last good one, {store.latest}, is intact" if store.latest.exists() else "no checkpoint was kept"
        raise UserError(f"could not write a checkpoint at step {st.step} ({getattr(e, 'strerror', None) or e}): "
                        f"{last}; free space or fix permissions, then --resume") from None
