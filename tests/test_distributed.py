"""Training that scales and survives, through the real command line: torchrun (gloo, 2 processes) equals one
process on the same global batch; a run SIGKILLed at a random step, or while writing a checkpoint, resumes to
weights bitwise equal to an uninterrupted run (alone and under 2-process DDP)."""
import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.proc import command, difflab, env, kill_at_step

# a real U-Net (ResNet blocks, self-attention, GroupNorm) on MNIST at 16 x 16: a step takes a few ms
UNET = ["--data", "mnist", "--set", "data.limit=512", "--set", "data.image_size=16", "--set", "unet.base_channels=8",
        "--set", "unet.channel_mult=[1,2]", "--set", "unet.attention_levels=[1]", "--set", "train.batch_size=16",
        "--set", "train.lr=1e-3", "--set", "train.warmup_images=64", "--set", "train.log_every=1",
        "--set", "train.ema_half_life_images=200", "--sample", "0"]


def trained(run: Path) -> dict[str, torch.Tensor]:
    """Model, EMA and optimizer tensors of a run's newest checkpoint (generator states left out)."""
    return {k: v for k, v in load_file(str(run / "checkpoint.safetensors")).items() if not k.startswith("rng.")}


def losses(run: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["grad_norm"]) for r in rows]


def assert_bitwise_equal(a: Path, b: Path) -> None:
    ta, tb = trained(a), trained(b)
    assert ta.keys() == tb.keys()
    differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    assert losses(a) == losses(b)


def test_one_process_and_torchrun_resume_bitwise_after_sigkill_and_agree(tmp_path):
    """30 steps of 16 images, checkpoints every 4, SIGKILLed at a random step (every process at once) and resumed:
    bitwise equal to the uninterrupted run, alone and under torchrun; there, 2 ranks x 2 micro-batches of 4: DDP's
    gradient average and accumulation must give the global-batch step of the run alone."""
    args = ["train", *UNET, "--set", "train.max_images=480", "--set", "train.checkpoint_every_images=64"]
    alone = difflab(*args, "--out", "alone", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    cut_and_resume(tmp_path, args, nproc=0, full="alone", cut="cut")
    ddp = [*args, "--set", "train.grad_accum=2"]
    full = difflab(*ddp, "--out", "full", cwd=tmp_path, nproc=2)
    assert full.returncode == 0, full.stderr
    assert "data parallel: 2 ranks on cpu (gloo), 8 images per rank" in full.stdout
    assert full.stdout.count("trained 30 steps") == 1  # rank 0 alone logs
    assert "Grad strides" not in full.stderr and "Traceback" not in full.stderr, full.stderr  # quiet ranks
    for (s1, l1, g1), (s2, l2, g2) in zip(losses(tmp_path / "alone"), losses(tmp_path / "full"), strict=True):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-4) and g1 == pytest.approx(g2, rel=1e-3)
    a, b = trained(tmp_path / "alone"), trained(tmp_path / "full")
    for prefix in ("model.", "ema."):
        diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a if k.startswith(prefix)])
        # float tolerance: summation order differs. Adam divides by sqrt(v), so a parameter whose gradient is ~0
        # (a bias ahead of a GroupNorm) moves by ~lr on rounding noise; the others agree to 1e-5.
        assert (diff < 1e-5).float().mean() > 0.99, f"{prefix}: {(diff >= 1e-5).sum()} of {diff.numel()} differ"
        assert diff.max() < 2 * 1e-3 * 30, diff.max()  # at most the lr-sized noise, 30 steps
    cut_and_resume(tmp_path, ddp, nproc=2, full="full", cut="ddp_cut")


def test_a_setting_that_cannot_work_under_torchrun_is_one_line_from_rank_0(tmp_path):
    bad = difflab("train", *UNET, "--set", "train.batch_size=15", "--out", "bad", cwd=tmp_path, nproc=2)
    assert bad.returncode != 0 and bad.stderr.count("difflab train: error:") == 1, bad.stderr  # one line, rank 0's


# the VAE and the noise-conditional classifier go through the same loop (objectives of their own)
VAE = ["vae", "--set", "data.limit=512", "--set", "vae.width=8", "--set", "train.batch_size=16",
       "--set", "train.log_every=1", "--set", "train.ema_half_life_images=200", "--eval-images", "16"]
CLASSIFIER = ["train", *UNET, "--set", "model=classifier", "--set", "classifier.base_channels=8",
              "--set", "classifier.channel_mult=[1,2]", "--set", "classifier.attention_levels=[1]"]


def kill_and_resume(tmp_path: Path, nproc: int, command_args: tuple[str, ...] = ("train", *UNET)) -> None:
    args = [*command_args, "--set", "train.max_images=480", "--set", "train.checkpoint_every_images=64"]  # 30 steps
    full = difflab(*args, "--out", "full", cwd=tmp_path, nproc=nproc)
    assert full.returncode == 0, full.stderr
    cut_and_resume(tmp_path, args, nproc)


def cut_and_resume(tmp_path: Path, args: list[str], nproc: int, full: str = "full", cut: str = "cut") -> None:
    """Run `args` again into `cut`, SIGKILL it at a random step, resume it: bitwise equal to `full`."""
    step = random.SystemRandom().randrange(3, 20)  # a random step, printed on failure
    rc = kill_at_step(command(*args, "--out", cut, nproc=nproc), tmp_path, tmp_path / cut, step)
    assert rc == -signal.SIGKILL, f"the run ended ({rc}) before it could be killed at step {step}"
    latest = tmp_path / cut / "checkpoint.safetensors"
    had = latest.exists()  # killed before the first checkpoint (step 4): the resume starts the run afresh
    assert not had or json.loads(load_file_meta(latest))["step"] < 30  # it really was cut short
    resumed = difflab(*args, "--out", cut, "--resume", cwd=tmp_path, nproc=nproc)
    assert resumed.returncode == 0, resumed.stderr
    assert ("resuming from" in resumed.stdout) == had, (step, resumed.stdout)
    assert_bitwise_equal(tmp_path / full, tmp_path / cut)


@pytest.mark.parametrize("model", ["vae", "classifier"])
def test_the_vae_and_the_classifier_resume_bitwise_after_sigkill(tmp_path, model):
    kill_and_resume(tmp_path, nproc=0, command_args=tuple(VAE if model == "vae" else CLASSIFIER))


DIES_WHILE_WRITING = """
import os, signal, sys
import difflab.train.checkpoint as ck
real, calls = ck.save_file, [0]
def save_file(tensors, filename, metadata=None):
    calls[0] += 1
    real(tensors, filename, metadata=metadata)
    if calls[0] == 3:  # the third checkpoint: leave half of it on disk and die
        with open(filename, "r+b") as f:
            f.truncate(os.path.getsize(filename) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
ck.save_file = save_file
from difflab.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_while_writing_a_checkpoint_resumes_from_the_previous_good_one(tmp_path):
    args = [*UNET, "--set", "train.max_images=320", "--set", "train.checkpoint_every_images=64"]  # 20 steps
    assert difflab("train", *args, "--out", "full", cwd=tmp_path).returncode == 0
    (tmp_path / "dies.py").write_text(DIES_WHILE_WRITING)
    p = subprocess.run([sys.executable, "dies.py", "train", *args, "--out", "cut"], cwd=tmp_path, env=env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stderr
    cut = tmp_path / "cut"
    assert list(cut.glob("checkpoints/.step-00000012.safetensors.tmp*"))  # the half-written third checkpoint
    assert json.loads(load_file_meta(cut / "checkpoint.safetensors"))["step"] == 8  # the second: intact
    resumed = difflab("train", *args, "--out", "cut", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 8" in resumed.stdout
    assert not list(cut.glob("**/.*tmp*"))  # the debris is cleaned up
    assert_bitwise_equal(tmp_path / "full", cut)


def load_file_meta(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["meta"]
