"""Training that survives: checkpoint rotation and fallback, write errors, the non-finite-step guard, EMA, mixed
precision, compile, and TensorBoard event files read back by TensorBoard itself."""
import errno
import json
import math

import pytest
import torch

from difflab.config import build_config
from difflab.data.build import build_dataset
from difflab.errors import UserError
from difflab.losses.objective import DiffusionObjective
from difflab.train import loop
from difflab.train.checkpoint import load_checkpoint
from difflab.train.ema import EMA, ema_beta
from difflab.train.events import crc32c
from difflab.train.order import DataOrder
from difflab.train.precision import native_bf16_cpu
from difflab.train.state import load_state
from difflab.train.store import CheckpointStore
from difflab.train.run import load_run

QUIET = dict(progress=False, log=lambda s: None)
TOY = {"arch": "mlp", "data": {"name": "gmm", "num_points": 2048}, "mlp": {"hidden": 32, "depth": 2},
       "train": {"batch_size": 32, "max_images": 32 * 12, "lr": 1e-3, "warmup_images": 64, "log_every": 1,
                 "ema_half_life_images": 50_000,
                 "checkpoint_every_images": 32 * 2, "keep_checkpoints": 2}}


def toy(**train) -> tuple:
    cfg = build_config(base={**TOY, "train": {**TOY["train"], **train}})
    return cfg, build_dataset(cfg.data)


def tensors(path) -> dict:
    return {k: v for k, v in load_checkpoint(path)[0].items() if not k.startswith("rng.")}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_last_k_checkpoints_are_kept_and_the_newest_readable_one_resumes(tmp_path):
    cfg, data = toy()
    loop.train(cfg, data, tmp_path, **QUIET)
    store = CheckpointStore(tmp_path, keep=2)
    assert [p.name for p in store.step_files()] == ["step-00000012.safetensors", "step-00000010.safetensors"]
    assert same(tensors(tmp_path / "checkpoint.safetensors"), tensors(store.step_files()[0]))
    # damage the newest (the latest link shares its bytes): resuming falls back to step 10 and says so
    (tmp_path / "checkpoint.safetensors").write_bytes(b"")
    logs = []
    path, _, meta = store.load_newest(logs.append)
    assert path.name == "step-00000010.safetensors" and meta["step"] == 10
    assert any("skipping" in ln for ln in logs)
    more, _ = toy(max_images=32 * 14)
    loop.train(more, data, tmp_path, resume=True, **QUIET)
    full = tmp_path / "full"
    loop.train(more, data, full, **QUIET)
    assert same(tensors(tmp_path / "checkpoint.safetensors"), tensors(full / "checkpoint.safetensors"))


def test_a_failed_checkpoint_write_keeps_the_last_good_one(tmp_path, monkeypatch):
    import difflab.train.checkpoint as ck

    real, calls = ck.save_file, [0]

    def disk_full(t, filename, metadata=None):
        calls[0] += 1
        if calls[0] == 2:
            with open(filename, "wb") as f:
                f.write(b"\0" * 100)  # part of the file made it to disk
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real(t, filename, metadata=metadata)

    monkeypatch.setattr(ck, "save_file", disk_full)
    cfg, data = toy()
    with pytest.raises(UserError, match="No space left on device.*intact"):
        loop.train(cfg, data, tmp_path, **QUIET)
    assert load_run(tmp_path).step == 2  # the first checkpoint, readable
    assert not list(tmp_path.glob("**/.*tmp*"))


def nan_at(monkeypatch, steps: set[int]) -> list[int]:
    """Make the training loss non-finite at the given (1-based) steps."""
    real, seen = DiffusionObjective.loss, []

    def poisoned(*a, **k):
        seen.append(1)
        out = real(*a, **k)
        return out * float("nan") if len(seen) in steps else out

    monkeypatch.setattr(DiffusionObjective, "loss", poisoned)
    return seen


def test_a_non_finite_step_is_skipped_logged_and_never_reaches_the_weights_or_ema(tmp_path, monkeypatch):
    cfg, data = toy(max_images=32 * 5, checkpoint_every_images=10**6)
    loop.train(toy(max_images=32 * 4, checkpoint_every_images=10**6)[0], data, tmp_path / "four", **QUIET)
    nan_at(monkeypatch, {5})
    logs = []
    res = loop.train(cfg, data, tmp_path / "five", progress=False, log=logs.append)
    assert res.skipped == 1 and res.steps == 5 and math.isnan(res.final_loss)
    assert any("step 5: non-finite loss" in ln and "skipped" in ln for ln in logs)
    # the skipped step changed nothing: weights, EMA and Adam's moments are those after step 4
    assert same(tensors(tmp_path / "four" / "checkpoint.safetensors"), tensors(tmp_path / "five" / "checkpoint.safetensors"))
    rows = [json.loads(ln) for ln in (tmp_path / "five" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 5 and rows[-1]["skipped"] == "non-finite" and rows[-1]["loss"] is None  # JSON null


def test_too_many_bad_steps_in_a_row_stop_the_run_and_keep_the_good_checkpoint(tmp_path, monkeypatch):
    cfg, data = toy(max_images=32 * 4)
    loop.train(cfg, data, tmp_path, **QUIET)
    before = (tmp_path / "checkpoint.safetensors").read_bytes()
    nan_at(monkeypatch, set(range(1, 100)))
    more, _ = toy(max_images=32 * 20, max_bad_steps=3)
    with pytest.raises(UserError, match="3 steps in a row had a non-finite loss"):
        loop.train(more, data, tmp_path, resume=True, **QUIET)
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before


def test_ema_half_life_does_not_change_with_batch_size():
    """Live weights jump from 0 to 1; after H images the EMA is halfway there, for any batch size."""
    H = 4096
    for b in (8, 64, 512):
        live, ema = torch.nn.Linear(1, 1, bias=False), None
        torch.nn.init.zeros_(live.weight)
        ema = EMA(live)
        torch.nn.init.ones_(live.weight)
        cfg = build_config(base={**TOY, "train": {**TOY["train"], "batch_size": b, "ema_half_life_images": H,
                                                  "ema_rampup": 0}})
        for images in range(0, H, b):
            ema.update(live, ema_beta(b, loop.ema_half_life(cfg, images)))
        assert ema.model.weight.item() == pytest.approx(0.5, abs=1e-6)
        assert live.weight.item() == 1.0  # the EMA never writes over the live weights
    # with the ramp-up, the half-life at n images seen is (almost) the same function of n for any batch size
    hl = [loop.ema_half_life(build_config(base={"train": {"batch_size": b, "ema_half_life_images": 50_000}}), 20000) for b in (8, 512)]
    assert hl[0] == pytest.approx(hl[1], rel=0.03)


def test_ema_is_a_separate_copy_through_training_and_resume(tmp_path):
    cfg, data = toy()
    loop.train(cfg, data, tmp_path, **QUIET)
    st = load_state(tmp_path / "checkpoint.safetensors", cfg)
    live = {p.data_ptr() for p in st.net.parameters()}
    assert live.isdisjoint({p.data_ptr() for p in st.ema.model.parameters()})
    assert any(not torch.equal(a, b) for a, b in zip(st.net.parameters(), st.ema.model.parameters()))


def test_the_data_stream_continues_across_a_change_of_batch_size():
    order = DataOrder(100, seed=3)
    stream = torch.cat([order.batch(i, 10) for i in range(0, 300, 10)])
    assert torch.equal(torch.cat([order.batch(0, 70), order.batch(70, 130), order.batch(200, 100)]), stream)
    assert all(sorted(stream[e * 100:(e + 1) * 100].tolist()) == list(range(100)) for e in range(3))  # epochs


def tiny_unet(**train):
    base = {"arch": "unet", "data": {"name": "mnist", "limit": 1024, "image_size": 16},
            "unet": {"base_channels": 8, "channel_mult": [1, 2], "attention_levels": [1]},
            "train": {"batch_size": 32, "max_images": 32 * 80, "lr": 2e-3, "warmup_images": 256, "log_every": 1,
                      "parameterization": "v", "tensorboard": False, **train}}
    cfg = build_config(base=base)
    return cfg, build_dataset(cfg.data)


def tail_loss(run, n=30) -> float:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return sum(r["loss"] for r in rows[-n:]) / n


@pytest.mark.skipif(not native_bf16_cpu(), reason="no native bf16 on this CPU: training refuses bf16 here")
def test_bf16_training_reaches_the_fp32_loss(tmp_path):
    """Same seeds, same batches: bf16 autocast ends within 3 % of fp32's loss (mean of the last 30 steps)."""
    for precision in ("fp32", "bf16"):
        cfg, data = tiny_unet(precision=precision)
        loop.train(cfg, data, tmp_path / precision, **QUIET)
    fp32, bf16 = tail_loss(tmp_path / "fp32"), tail_loss(tmp_path / "bf16")
    first = json.loads((tmp_path / "fp32" / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    assert fp32 < 0.8 * first  # it learned something
    assert bf16 == pytest.approx(fp32, rel=0.03)
    a, b = load_run(tmp_path / "fp32"), load_run(tmp_path / "bf16")
    assert all(p.dtype == torch.float32 for p in b.net.parameters())  # master weights stay float32
    assert not torch.equal(next(a.net.parameters()), next(b.net.parameters()))  # bf16 really ran


def test_fp16_with_loss_scaling_trains_and_records_the_scale(tmp_path):
    cfg, data = toy(precision="fp16", max_images=32 * 30, lr=1e-2)
    res = loop.train(cfg, data, tmp_path, **QUIET)
    rows = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert res.skipped == 0 and all("loss_scale" in r for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    meta = load_checkpoint(tmp_path / "checkpoint.safetensors")[1]
    assert meta["grad_scaler"]["scale"] == rows[-1]["loss_scale"]  # the scaler resumes where it was


def test_compiled_training_matches_eager(tmp_path):
    cfg, data = toy(max_images=32 * 4)
    loop.train(cfg, data, tmp_path / "eager", **QUIET)
    cfg, _ = toy(max_images=32 * 4, compile=True)
    loop.train(cfg, data, tmp_path / "compiled", **QUIET)
    a, b = tensors(tmp_path / "eager" / "checkpoint.safetensors"), tensors(tmp_path / "compiled" / "checkpoint.safetensors")
    assert a.keys() == b.keys()  # compiled runs save the plain network's names
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_tensorboard_reads_the_event_files(tmp_path):
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    cfg, data = toy(tensorboard=True, max_images=32 * 6)
    loop.train(cfg, data, tmp_path, **QUIET)
    more, _ = toy(tensorboard=True, max_images=32 * 9)
    (tmp_path / "checkpoint.safetensors").unlink()  # resume from step 4 (keep=2: steps 4 and 6 are on disk)
    (tmp_path / "checkpoints" / "step-00000006.safetensors").unlink()
    loop.train(more, data, tmp_path, resume=True, **QUIET)
    acc = ea.EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert {"train/loss", "train/grad_norm", "train/lr"} <= set(acc.Tags()["scalars"])
    rows = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    got = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    # steps 5 and 6 of the first session are dropped by the resumed session's start marker, as in metrics.jsonl
    assert [s for s, _ in got] == [r["step"] for r in rows] == list(range(1, 10))
    assert [v for _, v in got] == pytest.approx([r["loss"] for r in rows], rel=1e-6)


def test_a_run_started_over_in_its_folder_keeps_nothing_of_the_old_one(tmp_path):
    cfg, data = toy(tensorboard=True)
    loop.train(cfg, data, tmp_path, **QUIET)  # 12 steps: step-10, step-12 kept
    short, _ = toy(tensorboard=True, max_images=32 * 4)
    loop.train(short, data, tmp_path, overwrite=True, **QUIET)  # what `difflab demo` does to its folder
    names = [p.name for p in CheckpointStore(tmp_path).step_files()]
    assert names == ["step-00000004.safetensors", "step-00000002.safetensors"]
    assert load_run(tmp_path).step == 4 and len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1


def test_bf16_is_refused_on_a_cpu_without_native_bf16(tmp_path, monkeypatch):
    import difflab.train.precision as precision

    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
    cfg, data = toy(precision="bf16")
    with pytest.raises(UserError, match="native bf16"):
        loop.train(cfg, data, tmp_path, **QUIET)
    assert not (tmp_path / "checkpoint.safetensors").exists()
