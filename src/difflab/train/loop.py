"""The training loop (Algorithm 1): data parallel, mixed precision, deterministic per step, so a resumed run
continues exactly, and a non-finite step is skipped rather than learned."""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from difflab.budget import Clock
from difflab.conditions.kinds import kinds_for
from difflab.config import RunConfig, dump_yaml
from difflab.data.dataset import ImageData
from difflab.errors import UserError
from difflab.losses.objective import Batch, Objective
from difflab.noise import NoiseSource
from difflab.train.build import build_objective
from difflab.train.conditions import DataConditions
from difflab.train.distributed import World, close_world, init_world, standard_grad_layout
from difflab.train.ema import ema_beta
from difflab.train.checkpoint import read_meta
from difflab.train.events import EventWriter
from difflab.train.metrics import record, truncate_metrics
from difflab.train.interrupt import Interrupted, StopRequest
from difflab.train.notes import short_run_notes
from difflab.train.order import DataOrder, step_seed
from difflab.train.precision import check_precision, resolve_precision, with_precision
from difflab.train.progress import Progress
from difflab.train.state import (TrainState, budget_defaults, ema_half_life, lr_at, new_state, restore, restore_rng, save_state)
from difflab.train.store import LATEST, CheckpointStore

CHECKPOINT = LATEST
MIN_TRAIN_SHARE = 0.05  # a run (or a resumed one) must have at least this share of its budget left to train


def too_little_to_train(budget_s: float, trained_s: float, reserve_s: float) -> bool:
    """A budget (0: none) that leaves under MIN_TRAIN_SHARE of itself to train, after what the run already trained
    and what is kept for the work after training."""
    return bool(budget_s) and trained_s >= budget_s * (1 - MIN_TRAIN_SHARE) - reserve_s


@dataclass(frozen=True)
class TrainResult:
    steps: int
    images: int
    seconds: float
    final_loss: float
    stopped_by: str  # "images", "time" or "interrupt"
    skipped: int = 0  # steps skipped for a non-finite loss or gradient
    notes: tuple[str, ...] = ()  # why the run may be too short to mean anything (train/notes.py)


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean over the global batch
    grad_norm: float
    applied: bool  # False: the step was skipped and nothing (weights, EMA, optimizer moments) changed
    overflow: bool  # fp16 only: the gradients overflowed at the current loss scale (routine; the scale drops)
    time_up: bool  # some rank ran out of the time budget
    interrupted: bool  # some rank was asked to stop (Ctrl-C, SIGTERM)


def check_fit(cfg: RunConfig, net: nn.Module, data: ImageData, objective: Objective) -> DataConditions:
    """Refuse data whose shape does not fit the network, or conditions (labels, captions) the model cannot take;
    returns the examples' conditions."""
    net.check_input(data.x[:1])
    return DataConditions(kinds_for(cfg), objective.conditions, data)


def train(cfg: RunConfig, data: ImageData, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          log: Callable[[str], None] = print, progress: bool = True, reserve_s: float = 0.0,
          planned_images: int = 0, clock: Clock = time.monotonic,
          reserve_for: str = "the work after training") -> TrainResult:
    """Train with Algorithm 1 until max_images or the time budget train.minutes less `reserve_s` (kept for
    `reserve_for`, named in a refusal; both read on `clock`); checkpoints and metrics go to run_dir. Unset warm-up and EMA half-life
    follow `planned_images` (rank 0's; default max_images). The first Ctrl-C stops after the current step with
    metrics, checkpoint (and the caller's plot) at that step, then raises Interrupted.

    Under torchrun every rank calls this; rank 0 alone logs and writes."""
    world = init_world(cfg.train.device)
    try:
        return _train(cfg, data, Path(run_dir), world, resume, overwrite, log if world.main else (lambda s: None),
                      progress and world.main, reserve_s, planned_images, clock, reserve_for)
    finally:
        close_world(world)


def _fill_unset(cfg: RunConfig, store: CheckpointStore, resume: bool, planned: int, world: World) -> RunConfig:
    """Unset warm-up / EMA half-life: the resumed checkpoint's values, else from the images rank 0 plans to see
    (every rank takes rank 0's number, so all train alike)."""
    tc, saved = cfg.train, {}
    if tc.warmup_images is not None and tc.ema_half_life_images is not None:
        return cfg
    found = store.candidates() if resume else []
    if found:
        saved = (read_meta(found[0][1]).get("config") or {}).get("train") or {}
    tc = replace(tc, **{k: saved[k] for k in ("warmup_images", "ema_half_life_images")
                        if getattr(tc, k) is None and isinstance(saved.get(k), int)})
    planned = int(world.sum(torch.tensor(float(planned if world.main else 0), dtype=torch.float64,
                                         device=world.device)))
    return budget_defaults(replace(cfg, train=tc), planned or tc.max_images)


def _start(cfg: RunConfig, store: CheckpointStore, world: World, resume: bool, overwrite: bool,
           log: Callable[[str], None]) -> TrainState:
    """A fresh state, or the newest readable checkpoint's on --resume (a fresh one when the folder has none)."""
    if not resume:
        if store.holds_run() and not overwrite:
            raise UserError(f"{store.dir} already holds a run: pass --resume to continue it, or choose another --out")
        return new_state(cfg, world.device)
    found = store.load_newest(log)
    if found is None:
        if store.holds_run():
            raise UserError(f"no readable difflab checkpoint in {store.dir} (every one is damaged or foreign): "
                            "start a new run with another --out")
        log(f"no checkpoint in {store.dir} yet: starting a new run")
        return new_state(cfg, world.device)
    path, tensors, meta = found
    st = restore(tensors, meta, cfg, path, world.device)
    log(f"resuming from {path} at step {st.step} ({st.images} images)")
    return st


def _train(cfg: RunConfig, data: ImageData, run_dir: Path, world: World, resume: bool, overwrite: bool,
           log: Callable[[str], None], progress: bool, reserve_s: float, planned: int, clock: Clock,
           reserve_for: str) -> TrainResult:
    entered = clock()
    tc = cfg.train
    if tc.batch_size % (world.size * tc.grad_accum):
        raise UserError(f"train.batch_size={tc.batch_size} must divide into {world.size} ranks x "
                        f"train.grad_accum={tc.grad_accum} equal micro-batches")
    store = CheckpointStore(run_dir, tc.keep_checkpoints)
    cfg = _fill_unset(cfg, store, resume, planned, world)
    tc = cfg.train
    st = _start(cfg, store, world, resume, overwrite, log)
    objective = build_objective(cfg, data.spec, st.net)
    conditions = check_fit(cfg, st.net, data, objective)  # before anything is written
    if st.images >= tc.max_images:
        raise UserError(f"the run already used its budget ({st.images} of train.max_images={tc.max_images} images): "
                        "pass a larger --max-images")
    if too_little_to_train(tc.minutes * 60, st.seconds, reserve_s):
        kept = f", {reserve_s:.0f} s kept for {reserve_for}" if reserve_s >= 1 else ""
        need = (st.seconds + reserve_s) / 60 / (1 - MIN_TRAIN_SHARE) + 0.5
        again = "the run is already at its budget" if st.step else "the time budget leaves too little to train"
        raise UserError(f"{again}: {st.seconds:.0f} s trained of a {tc.minutes:g}-minute budget{kept}; pass "
                        f"--minutes {need:.1f} or more (a resumed run's budget is its total)")
    if tc.precision == "fp16" and world.device.type == "cpu":
        log("note: fp16 on a CPU is slow (no fp16 matrix units); train.precision=bf16 is the CPU choice where the "
            "CPU has native bf16")
    check_precision(tc.precision, world.device)
    if tc.precision == "auto":
        log(f"precision: {resolve_precision('auto', world.device)} (train.precision=auto: bf16 where this device runs it "
            "natively)")
    restore_rng(st, world)
    st.data_spec = data.spec
    metrics = events = None
    problem = None
    if world.main:
        try:
            store.check_writable()
            store.clean_temps()
            if overwrite and not resume:  # started over: no checkpoint or event file of the old run may mix in
                store.clear()
                for f in (run_dir / "tb").glob("events.out.tfevents.*"):
                    f.unlink()
            (run_dir / "config.yaml").write_text(dump_yaml(cfg))  # the config in force, also after a resume
            truncate_metrics(run_dir / "metrics.jsonl", st.step)
            metrics = open(run_dir / "metrics.jsonl", "a")
            events = EventWriter(run_dir / "tb", st.step) if tc.tensorboard else None
        except (UserError, OSError) as e:
            problem = e
    if float(world.sum(torch.tensor(float(problem is not None), device=world.device))) > 0:  # every rank stops
        if isinstance(problem, OSError):
            raise UserError(f"cannot write to {run_dir} ({problem.strerror or problem}): choose a writable --out "
                            "folder") from None
        raise problem or UserError(f"rank 0 could not prepare {run_dir} (its message says why)")
    if world.distributed:
        log(f"data parallel: {world.size} ranks on {world.device.type} "
            f"({'nccl' if world.device.type == 'cuda' else 'gloo'}), {tc.batch_size // world.size} images per rank")
    model: nn.Module = st.net
    if world.distributed:
        standard_grad_layout(st.net)
        model = DistributedDataParallel(st.net, device_ids=[world.device] if world.device.type == "cuda" else None)
    if tc.compile:
        log("compiling the network (torch.compile): the first steps take a while")
    forward = with_precision(torch.compile(model) if tc.compile else model, tc.precision, world.device)
    order = DataOrder(len(data), tc.seed)
    total_steps = st.step + math.ceil((tc.max_images - st.images) / tc.batch_size)
    deadline = tc.minutes * 60 - reserve_s - (clock() - entered)  # in the run's training seconds
    bar = Progress(total_steps, "train", "step", tc.log_every, st.step, log=log, enabled=progress,
                   budget_s=max(deadline, 1.0) if tc.minutes else 0.0, spent_s=st.seconds)
    next_ckpt = (st.images // tc.checkpoint_every_images + 1) * tc.checkpoint_every_images
    t_start, sec0, loss_v, stopped, skipped, clean_exit = clock(), st.seconds, float("nan"), "images", 0, False
    st.net.train()
    stop = StopRequest(say=world.main).__enter__()
    try:
        while st.images < tc.max_images:
            r = _step(st, objective, forward, model, data, conditions, order, cfg, world, stop.requested,
                      time_up=lambda: bool(tc.minutes) and sec0 + clock() - t_start >= deadline)
            st.step += 1
            st.images += tc.batch_size
            st.seconds = sec0 + clock() - t_start
            loss_v = r.loss
            bad = not (r.applied or r.overflow)
            st.bad_in_a_row = st.bad_in_a_row + 1 if bad else 0
            skipped += bad
            bar.update(1, loss=loss_v)
            end = st.images >= tc.max_images or r.time_up or r.interrupted
            if st.step % tc.log_every == 0 or st.step == 1 or not r.applied or end:
                record(metrics, events, cfg, st, r, end and st.step % tc.log_every != 0)
            if bad:
                log(f"step {st.step}: non-finite loss or gradient (loss {r.loss:.4g}, gradient norm {r.grad_norm:.4g})"
                    f": skipped, weights and EMA unchanged ({st.bad_in_a_row} of train.max_bad_steps="
                    f"{tc.max_bad_steps} in a row)")
                if st.bad_in_a_row >= tc.max_bad_steps:
                    kept = f"the last good checkpoint in {run_dir} is kept" if store.latest.exists() else \
                        "no checkpoint had been written yet"
                    raise UserError(f"training diverged: {st.bad_in_a_row} steps in a row had a non-finite loss or "
                                    f"gradient (last at step {st.step}): lower train.lr or use train.precision=fp32; "
                                    f"{kept}")
            if st.images >= next_ckpt and not bad:  # never in the middle of a run of skipped steps
                save_state(store, cfg, st, world)
                next_ckpt += tc.checkpoint_every_images
            if r.time_up or r.interrupted:
                stopped = "interrupt" if r.interrupted else "time"
                break
        clean_exit = True
    except KeyboardInterrupt:
        clean_exit = not world.distributed  # alone, Ctrl-C saves; ranks stopped at different points cannot
        raise
    finally:
        stop.__exit__()
        bar.close()
        if metrics is not None:
            metrics.close()
        if events is not None:
            events.close()
        if clean_exit:  # not after divergence or a failed write: the last good checkpoint stays the newest
            save_state(store, cfg, st, world)  # also on Ctrl-C when alone: nothing trained is lost
    log(f"trained {st.step} steps ({st.images} images) in {st.seconds:.0f}s; last loss {loss_v:.4f}"
        + (f"; {skipped} non-finite steps skipped" if skipped else ""))
    notes = short_run_notes(cfg, st.step, st.images, data.spec.is_image) if cfg.model == "diffusion" else []
    result = TrainResult(st.step, st.images, st.seconds, loss_v, stopped, skipped, tuple(notes))
    if stopped == "interrupt":
        raise Interrupted(f"stopped at step {st.step}: checkpoint, metrics and loss plot of step {st.step} are in "
                          f"{run_dir}; continue with --resume", result)
    return result


def _step(st: TrainState, objective: Objective, forward: nn.Module, model: nn.Module, data: ImageData,
          conditions: DataConditions, order: DataOrder, cfg: RunConfig, world: World, stop: bool,
          time_up: Callable[[], bool]) -> StepResult:
    """One step of the objective on the global batch; this rank trains on its slice, in grad_accum micro-batches.

    Example k of the global batch draws everything random (t, eps, latent noise, condition dropout) from its own
    stream (step seed, k), so the step does not depend on the number of ranks or micro-batches (up to float
    summation order)."""
    tc, dev, B = cfg.train, world.device, cfg.train.batch_size
    seed = step_seed(tc.seed, st.step)
    idx = order.batch(st.images, B)  # Algorithm 1, line 2 (the global batch)
    torch.manual_seed(seed + 1 + world.rank)  # dropout
    mine = world.shard(B)
    micro = (mine.stop - mine.start) // tc.grad_accum
    for group in st.opt.param_groups:
        group["lr"] = lr_at(cfg, st.images)
    st.opt.zero_grad(set_to_none=True)
    loss_sum = torch.zeros((), device=dev)
    for m in range(tc.grad_accum):
        sl = slice(mine.start + m * micro, mine.start + (m + 1) * micro)
        cond = conditions(idx[sl])
        cond = cond.to(dev) if cond is not None else None
        noise = NoiseSource.for_indices(seed, range(sl.start, sl.stop), block=1)  # lines 3-4, example by example
        last = m == tc.grad_accum - 1
        with model.no_sync() if world.distributed and not last else nullcontext():
            loss = objective.loss(forward, Batch(data.x[idx[sl]].to(dev), cond), noise).sum() / (mine.stop - mine.start)
            st.scaler.scale(loss).backward()  # DDP averages over ranks: the gradient of the global mean
        loss_sum += loss.detach()
    st.scaler.unscale_(st.opt)
    gnorm = torch.nn.utils.clip_grad_norm_(st.net.parameters(), tc.grad_clip if tc.grad_clip > 0 else float("inf"))
    up = float(time_up())  # with this step's forward and backward counted: the step that reaches the deadline is
    # the last (checked here, so one collective carries it with the loss)
    stats = world.sum(torch.stack([loss_sum.float(), torch.tensor(up, device=dev), torch.tensor(float(stop),
                                                                                                 device=dev)]))
    loss_v, gnorm_v = float(stats[0]) / world.size, float(gnorm)  # the norm is of the averaged gradient: global
    finite = math.isfinite(loss_v) and math.isfinite(gnorm_v)
    if finite:
        st.scaler.step(st.opt)
        st.ema.update(st.net, ema_beta(B, ema_half_life(cfg, st.images)))
    st.scaler.update()  # fp16: an overflow halves the loss scale
    overflow = st.scaler.is_enabled() and math.isfinite(loss_v) and not finite
    return StepResult(loss_v, gnorm_v, finite, overflow, bool(stats[1] > 0), bool(stats[2] > 0))
