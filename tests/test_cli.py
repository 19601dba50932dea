"""The real commands on tiny settings, and bad input: one line, exit code 2, nothing half-written."""
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.proc import assert_one_line_error, difflab, read_only

TINY_TOY = ["--data", "gmm", "--set", "arch=mlp", "--set", "mlp.hidden=32", "--set", "train.max_images=2048",
            "--set", "train.batch_size=64", "--set", "train.log_every=8", "--set", "sample.steps=20",
            "--set", "sample.num_samples=16"]


def test_train_sample_resume_on_a_toy_set(tmp_path):
    p = difflab("train", *TINY_TOY, "--out", "run", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    run = tmp_path / "run"
    for f in ("checkpoint.safetensors", "config.yaml", "metrics.jsonl", "loss.png", "samples.png", "samples.npz"):
        assert (run / f).is_file(), f
    assert np.load(run / "samples.npz")["samples"].shape == (16, 2)
    p = difflab("sample", "--run", "run", "--num", "8", "--steps", "10", "--name", "more", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert np.load(run / "more.npz")["samples"].shape == (8, 2)
    p = difflab("sample", "--run", "run", "--num", "8", "--sampler", "dpmpp_2m", "--nfe", "6", "--grid", "calibrated",
                "--name", "calibrated", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "calibration sweep 6" in p.stdout and np.isfinite(np.load(run / "calibrated.npz")["samples"]).all()
    assert_one_line_error(difflab("sample", "--run", "run", "--sampler", "pc", "--grid", "calibrated", cwd=tmp_path),
                          "deterministic")
    p = difflab("train", "--out", "run", "--resume", "--max-images", "4096", "--sample", "0", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "resuming from" in p.stdout and "trained 64 steps (4096 images)" in p.stdout


def test_config_file_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("arch: mlp\ndata:\n  name: moons\ntrain:\n  max_images: 640\n  batch_size: 64\n")
    p = difflab("train", "--config", "c.yaml", "--set", "train.lr=5e-4", "--sample", "0", "--out", "r", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    text = (tmp_path / "r" / "config.yaml").read_text()
    assert "name: moons" in text and "lr: 0.0005" in text and "max_images: 640" in text


@pytest.mark.parametrize("args,words", [
    (["--set", "train.lrr=1"], ["unknown config key train.lrr"]),
    (["--set", "train.lr=-1"], ["train.lr must be positive"]),
    (["--set", "train.batch_size=abc"], ["train.batch_size must be an integer"]),
    (["--set", "schedule.kind=quadratic"], ["schedule.kind"]),
    (["--data", "folder", "--data-path", "does/not/exist"], ["does/not/exist"]),
    (["--config", "missing.yaml"], ["missing.yaml"]),
    (["--set", "data.image_size=30", "--set", "data.limit=8"], ["not divisible"]),
    (["--bogus"], ["unrecognized arguments"]),
    (["--set", "train.learn_variance=true"], ["learn_variance needs train.objective"]),
    (["--set", "train.minutes=.nan"], ["finite number"]),
    (["--set", "unet.heads=3"], ["unet.heads"]),
    (["--set", "unet.channel_mult=[1,2]"], ["unet.attention_levels"]),
    (["--set", "sample.steps=5000"], ["sample.steps"]),
    (["--data", "moons"], ["arch=mlp"]),
    (["--threads", "0"], ["--threads"]),
    (["--data", "moons", "--data-path", "x.npz", "--set", "arch=mlp"], ["--data-path is only read"]),
    (["--set", "schedule.kind=vp", "--set", "train.objective=hybrid"], ["discrete schedule"]),
    (["--set", "train.precision=fp8"], ["train.precision must be one of"]),
    (["--set", "train.grad_accum=3"], ["train.grad_accum", "divide"]),
    (["--set", "train.keep_checkpoints=0"], ["train.keep_checkpoints must be positive"]),
    (["--set", "train.max_bad_steps=-1"], ["train.max_bad_steps"]),
    (["--set", "schedule.beta_T=2"], ["beta_T"]),
    (["--set", "train.ema_half_life_images=0"], ["ema_half_life_images"]),
])
def test_bad_training_input(tmp_path, args, words):
    p = difflab("train", *args, "--out", "out", cwd=tmp_path)
    assert_one_line_error(p, *words)
    assert not (tmp_path / "out").exists()  # nothing written


def test_images_that_do_not_fit_and_empty_data(tmp_path):
    np.savez(tmp_path / "rgb.npz", x=np.zeros((4, 28, 28, 3), np.uint8))
    p = difflab("train", "--data", "npz", "--data-path", "rgb.npz", "--out", "out", cwd=tmp_path)
    assert_one_line_error(p, "in_channels")
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 28, 28), np.uint8))
    p = difflab("train", "--data", "npz", "--data-path", "empty.npz", "--out", "out", cwd=tmp_path)
    assert_one_line_error(p, "empty")
    assert not (tmp_path / "out").exists()


def test_bad_checkpoints(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "checkpoint.safetensors").write_bytes(b"\x00garbage" * 100)
    assert_one_line_error(difflab("sample", "--run", "junk", cwd=tmp_path), "corrupt")
    (tmp_path / "foreign").mkdir()
    save_file({"w": np.zeros(3, np.float32)}, str(tmp_path / "foreign" / "checkpoint.safetensors"))
    assert_one_line_error(difflab("sample", "--run", "foreign", cwd=tmp_path), "not a difflab checkpoint")
    assert_one_line_error(difflab("sample", "--run", "nowhere", cwd=tmp_path), "does not exist")
    assert difflab("train", *TINY_TOY, "--sample", "0", "--out", "run", cwd=tmp_path).returncode == 0
    before = (tmp_path / "run" / "checkpoint.safetensors").read_bytes()
    p = difflab("train", "--out", "run", "--resume", "--set", "mlp.hidden=48", cwd=tmp_path)
    assert_one_line_error(p, "does not fit the model config", "mlp.hidden is 48 here but 32 in the checkpoint")
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes() == before  # nothing lost
    assert_one_line_error(difflab("sample", "--run", "run", "--steps", "5000", cwd=tmp_path), "steps")
    assert_one_line_error(difflab("sample", "--run", "run", "--name", "../x", cwd=tmp_path), "--name")
    assert_one_line_error(difflab("train", *TINY_TOY, "--out", "run", cwd=tmp_path), "already holds a run")
    assert_one_line_error(difflab("train", "--out", "run", "--resume", cwd=tmp_path), "larger --max-images")
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes() == before


def test_divergence_and_unwritable_output_keep_what_was_there(tmp_path):
    p = difflab("train", *TINY_TOY, "--set", "train.lr=1e30", "--set", "train.grad_clip=0", "--out", "div",
                cwd=tmp_path)
    assert_one_line_error(p, "diverged")
    assert not (tmp_path / "div" / "checkpoint.safetensors").exists()  # no poisoned checkpoint
    (tmp_path / "file").write_text("not a folder")
    assert_one_line_error(difflab("train", *TINY_TOY, "--out", "file/run", cwd=tmp_path), "cannot write")


def test_help_texts():
    for cmd in ([], ["train"], ["sample"], ["demo"]):
        p = subprocess.run([sys.executable, "-m", "difflab", *cmd, "--help"], capture_output=True, text=True)
        assert p.returncode == 0 and "usage: difflab" in p.stdout


def test_continuous_time_run_samplers_ode_likelihood_and_bench(tmp_path):
    """A VP-SDE run trained by DSM, sampled by named samplers, its exact likelihood, and the sampler bench."""
    p = difflab("train", *TINY_TOY, "--set", "schedule.kind=vp", "--out", "vp", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for sampler, extra in (("dpmpp_3m", ["--nfe", "10"]), ("edm", ["--nfe", "9", "--grid", "karras"]),
                           ("pc", ["--steps", "6"]), ("ddim", ["--nfe", "5", "--eta", "1"])):
        p = difflab("sample", "--run", "vp", "--sampler", sampler, *extra, "--num", "8", "--name", sampler, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert np.load(tmp_path / "vp" / f"{sampler}.npz")["samples"].shape == (8, 2)
    p = difflab("eval", "nll", "--checkpoint", "vp", "--method", "ode", "--exact-trace", "--num-images", "16",
                "--rtol", "1e-3", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "probability-flow ODE likelihood on 16" in p.stdout and "bits/dim" in p.stdout
    assert_one_line_error(difflab("eval", "nll", "--checkpoint", "vp", cwd=tmp_path), "discrete schedule", "--method ode")
    assert_one_line_error(difflab("sample", "--run", "vp", "--sampler", "heun", "--nfe", "2", cwd=tmp_path),
                          "at least 3 network evaluations")
    assert_one_line_error(difflab("sample", "--run", "vp", "--grid", "discrete", cwd=tmp_path), "discrete schedule")
    assert_one_line_error(difflab("sample", "--run", "vp", "--sampler", "euler_a", cwd=tmp_path), "sampler must be one of")
    assert_one_line_error(difflab("train", "--data", "gmm", "--set", "arch=mlp", "--set", "schedule.kind=ve",
                                  "--set", "train.objective=elbo", "--out", "x", cwd=tmp_path), "discrete schedule")
    p = difflab("bench", "samplers", "--no-peers", "--nfe", "5", "10", "--samples", "40", "10", "--mixtures", "2d",
                "--schedules", "linear", "--out", "b", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for f in ("bench.md", "bench.json", "bench.png"):
        assert (tmp_path / "b" / f).is_file(), f
    assert "dpmpp_3m@logsnr" in (tmp_path / "b" / "bench.md").read_text()


def test_a_vae_checkpoint_is_named_as_such(tmp_path):
    import torch

    from difflab.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "vae.safetensors", {"model.w": torch.zeros(2)}, {"config": {"model": "vae"}})
    assert_one_line_error(difflab("sample", "--run", "vae.safetensors", cwd=tmp_path), "VAE run", "difflab train")


def test_a_checkpoint_of_the_previous_format_and_an_unconditional_model_asked_for_a_class(tmp_path):
    import torch

    from safetensors.torch import save_file

    save_file({"model.w": torch.zeros(2)}, str(tmp_path / "old.safetensors"),
              metadata={"format": "difflab-checkpoint-1", "meta": "{}"})
    for cmd in (("sample", "--run"), ("eval", "nll", "--checkpoint")):
        assert_one_line_error(difflab(*cmd, "old.safetensors", cwd=tmp_path), "earlier difflab", "retrain")
    assert difflab("train", *TINY_TOY, "--out", "toy", "--sample", "0", cwd=tmp_path).returncode == 0
    assert_one_line_error(difflab("sample", "--run", "toy", "--class", "3", cwd=tmp_path), "--class needs a class-conditional run")


def test_nan_in_the_data_is_refused(tmp_path):
    x = np.zeros((8, 28, 28), np.float32)
    x[3, 4, 5] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    assert_one_line_error(difflab("train", "--data", "npz", "--data-path", "nan.npz", "--out", "out", cwd=tmp_path),
                          "NaN")
    assert not (tmp_path / "out").exists()


def test_damaged_foreign_and_read_only_runs_lose_nothing(tmp_path):
    every8 = ["--set", "train.checkpoint_every_images=512", "--sample", "0"]  # steps 8, 16, 24, 32; keeps 3
    assert difflab("train", *TINY_TOY, *every8, "--out", "run", cwd=tmp_path).returncode == 0
    run = tmp_path / "run"
    latest = run / "checkpoint.safetensors"
    good = latest.read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "checkpoint.safetensors").write_bytes(good[: len(good) // 2])
    assert_one_line_error(difflab("sample", "--run", "cut", cwd=tmp_path), "corrupt")
    # a read-only run folder: refused before training, nothing changed
    with read_only(run / "checkpoints"):  # found before training, not at the first checkpoint
        assert_one_line_error(difflab("train", "--out", "run", "--resume", "--max-images", "4096", cwd=tmp_path),
                              "cannot write", "checkpoints")
    with read_only(run):
        assert_one_line_error(difflab("train", "--out", "run", "--resume", "--max-images", "4096", cwd=tmp_path),
                              "cannot write", "writable")
        assert_one_line_error(difflab("train", *TINY_TOY, "--out", "run/inner", cwd=tmp_path), "cannot write")
    assert latest.read_bytes() == good and not (run / "inner").exists()
    # the newest checkpoint truncated (its step file shares the bytes): resume falls back to step 24
    with open(latest, "r+b") as f:
        f.truncate(len(good) // 3)
    p = difflab("train", "--out", "run", "--resume", "--max-images", "4096", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "skipping" in p.stdout and "step-00000024.safetensors at step 24" in p.stdout
    assert "trained 64 steps" in p.stdout
    # only foreign files: refused, left as they were
    (tmp_path / "alien").mkdir()
    save_file({"w": np.zeros(3, np.float32)}, str(tmp_path / "alien" / "checkpoint.safetensors"))
    alien = (tmp_path / "alien" / "checkpoint.safetensors").read_bytes()
    assert_one_line_error(difflab("train", *TINY_TOY, "--out", "alien", "--resume", cwd=tmp_path),
                          "no readable difflab checkpoint")
    assert (tmp_path / "alien" / "checkpoint.safetensors").read_bytes() == alien


def test_resume_before_the_first_checkpoint_restarts_the_same_run(tmp_path):
    assert difflab("train", *TINY_TOY, "--sample", "0", "--out", "run", cwd=tmp_path).returncode == 0
    for f in [tmp_path / "run" / "checkpoint.safetensors", *(tmp_path / "run" / "checkpoints").glob("*")]:
        f.unlink()  # as if killed before its first checkpoint: only config.yaml and metrics are there
    p = difflab("train", "--out", "run", "--resume", "--sample", "0", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "data: gmm" in p.stdout and "starting a new run" in p.stdout  # the run's own config, not the defaults
    assert "arch: mlp" in (tmp_path / "run" / "config.yaml").read_text()


def test_every_command_module_registers_a_handler_for_each_of_its_commands():
    from difflab.cli.main import make_parser

    def leaves(parser, handler=None):  # (name, its handler or its parent command's) of every runnable command
        handler = parser.get_default("handler") or handler
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            yield parser.prog, handler
        for action in subs:
            for child in action.choices.values():
                yield from leaves(child, handler)

    found = dict(leaves(make_parser()))
    assert {"difflab demo", "difflab train", "difflab restore", "difflab eval nll", "difflab bench samplers"} <= set(found)
    missing = [name for name, handler in found.items() if not callable(handler)]
    assert not missing, missing
