"""difflab restore and difflab edit end to end on a tiny phantom run: every task with its baselines and a diffusion
method writes its figure, arrays and report; input that cannot work is refused in one line."""
import json

import numpy as np
import pytest
from PIL import Image

from difflab.errors import UserError
from tests.proc import assert_one_line_error, difflab

TINY = ["--data", "phantoms", "--set", "data.image_size=32", "--set", "data.limit=64", "--set", "unet.base_channels=8",
        "--set", "unet.channel_mult=[1,2]", "--set", "unet.attention_levels=[]", "--max-images", "64", "--sample", "0",
        "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("restore")
    p = difflab("train", *TINY, "--out", "ph", cwd=root)
    assert p.returncode == 0, p.stderr
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(root / "grey.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(root / "small_mask.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "big.png")
    return root


@pytest.mark.parametrize("task,method", [("inpaint", "project"), ("superres", "repaint"), ("deblur", "dps"),
                                         ("mri", "moment"), ("ct", "dds")])
def test_every_task_restores_with_its_baselines(run, task, method):
    p = difflab("restore", "--task", task, "--run", "ph", "--data", "phantoms", "--num", "2", "--resize",
                "--method", method, "--nfe", "4", "--jumps", "2", "--iters", "3", "--out", f"r_{task}", "--quiet", cwd=run)
    assert p.returncode == 0, p.stderr
    out = run / f"r_{task}"
    report = json.loads((out / "report.json").read_text())
    baseline = {"inpaint": "masked input", "superres": "bicubic", "deblur": "Wiener", "mri": "zero-filled IFFT",
                "ct": "FBP"}[task]
    assert {baseline, "TV", f"diffusion ({method})"} <= set(report)
    assert all(np.isfinite(v["psnr"]) and 0 <= v["consistency"] for v in report.values())
    assert np.load(out / "restored.npz")["images"].shape == (2, 1, 32, 32)
    assert (out / "restore.png").is_file() and "PSNR" in (out / "report.md").read_text()
    if task == "mri":  # k-space is stored complex, and restoring from it works
        assert np.load(out / "measurement.npz")["y"].dtype == np.complex64
        p = difflab("restore", "--task", "mri", "--run", "ph", "--measurement", str(out / "measurement.npz"),
                    "--method", "dps", "--nfe", "3", "--out", "again", "--quiet", cwd=run)
        assert p.returncode == 0 and "consistency" in (run / "again" / "report.md").read_text(), p.stderr


def test_samples_report_their_mean_and_spread(run):
    """--samples K: the restoration is the mean of K different draws per image, their pixel std is saved beside it."""
    import torch

    from difflab import load
    from difflab.inverse.restore import TaskConfig, build_operator, posterior_mean, posterior_sample

    p = difflab("restore", "--task", "ct", "--run", "ph", "--data", "phantoms", "--num", "2", "--resize", "--method",
                "dds", "--nfe", "4", "--iters", "3", "--samples", "3", "--noise", "0.3", "--out", "r_mean", "--quiet",
                cwd=run)
    assert p.returncode == 0, p.stderr
    saved = np.load(run / "r_mean" / "restored.npz")
    assert saved["images"].shape == saved["std"].shape == (2, 1, 32, 32) and saved["std"].max() > 0
    assert "diffusion (dds, mean of 3)" in json.loads((run / "r_mean" / "report.json").read_text())
    pipe = load(run / "ph")
    op = build_operator(TaskConfig("inpaint"), tuple(pipe.shape))
    y = op.forward(torch.zeros(2, *pipe.shape))
    mean, std = posterior_mean(pipe, op, y, "dps", 3, nfe=3)
    draws = posterior_sample(pipe, op, y.repeat(3, 1, 1, 1), "dps", nfe=3).reshape(3, 2, *pipe.shape)
    assert torch.allclose(mean, draws.mean(0), atol=1e-5) and torch.allclose(std, draws.std(0), atol=1e-5)
    assert (draws[0] - draws[1]).abs().max() > 1e-3  # each copy its own noise
    assert_one_line_error(difflab("restore", "--task", "ct", "--run", "ph", "--data", "phantoms", "--resize",
                                  "--samples", "0", cwd=run), "--samples")


def test_a_run_trained_for_super_resolution_restores_from_its_condition(run):
    import torch

    from difflab import load
    from difflab.condition import LOWRES, Condition

    p = difflab("train", *TINY, "--set", "unet.lowres_factor=4", "--set", "train.cond_dropout=0.1", "--out", "sr",
                cwd=run)
    assert p.returncode == 0, p.stderr
    pipe = load(run / "sr")
    assert pipe.net.conditions == ("lowres",) and pipe.net.conv_in.in_channels == 2
    x = torch.zeros(2, 1, 32, 32)
    lr = torch.zeros(2, 1, 32, 32)
    lr[1] = 1.0
    with torch.no_grad():  # the low-resolution image reaches the network (its first layer is not zero-initialised)
        a = pipe.net(x, torch.full((2,), 0.5), Condition({LOWRES: lr}, {LOWRES: torch.zeros(1, 32, 32)}))
    assert (a[0] - a[1]).abs().max() > 1e-4
    p = difflab("restore", "--task", "superres", "--run", "sr", "--data", "phantoms", "--num", "2", "--resize",
                "--method", "conditional", "--nfe", "4", "--out", "r_sr", "--quiet", cwd=run)
    assert p.returncode == 0, p.stderr
    assert "diffusion (conditional)" in json.loads((run / "r_sr" / "report.json").read_text())
    assert_one_line_error(difflab("restore", "--task", "superres", "--run", "ph", "--data", "phantoms", "--resize",
                                  "--method", "conditional", cwd=run), "trained for 4x super-resolution")
    assert_one_line_error(difflab("restore", "--task", "superres", "--factor", "2", "--run", "sr", "--data", "phantoms",
                                  "--resize", "--method", "conditional", cwd=run), "unet.lowres_factor=4")


def test_edit_starts_from_the_noised_input(run):
    p = difflab("edit", "--input", "grey.png", "--run", "ph", "--t0", "0.3", "--num", "2", "--nfe", "4", "--out", "ed",
                "--quiet", cwd=run)
    assert p.returncode == 0, p.stderr
    assert np.load(run / "ed" / "edited.npz")["images"].shape == (2, 1, 32, 32) and (run / "ed" / "edit.png").is_file()
    p = difflab("edit", "--input", "grey.png", "--run", "ph", "--t0", "1", "--num", "2", "--nfe", "3", "--out", "ed1",
                cwd=run)  # t0 = 1: plain samples, said so
    assert p.returncode == 0 and "pure noise" in p.stderr + p.stdout, p.stderr


def test_a_measurement_file_carries_how_it_was_measured(run):
    """measurement.npz records the task settings: restoring from it uses them (the CT noise here), and a flag that
    contradicts them is refused in one line."""
    p = difflab("restore", "--task", "ct", "--run", "ph", "--input", "grey.png", "--noise", "0.3", "--views", "12",
                "--method", "dds", "--nfe", "3", "--iters", "2", "--out", "m1", "--quiet", cwd=run)
    assert p.returncode == 0, p.stderr
    p = difflab("restore", "--task", "ct", "--run", "ph", "--measurement", str(run / "m1" / "measurement.npz"),
                "--method", "dds", "--nfe", "3", "--iters", "2", "--out", "m2", "--quiet", cwd=run)
    assert p.returncode == 0, p.stderr
    assert "noise 0.3" in (run / "m2" / "report.md").read_text()
    for extra, says in ((["--views", "20"], "measured with --views 12"), (["--task", "mri"], "measured for --task ct")):
        args = ["restore", "--task", "ct", "--run", "ph", "--measurement", str(run / "m1" / "measurement.npz"), *extra]
        if "--task" in extra:
            args = [a for a in args if a != "ct"]
            args.remove("--task")
        assert_one_line_error(difflab(*args, cwd=run), says)


def test_restore_input_that_cannot_work_is_one_line(run):
    base = ["restore", "--run", "ph", "--nfe", "3", "--out", "refused"]
    np.savez(run / "bad_y.npz", y=np.zeros((1, 1, 5, 5), np.float32))
    np.savez(run / "complex_y.npz", y=np.zeros((1, 1, 30, 32), np.complex64))
    np.savez(run / "nan_y.npz", y=np.full((1, 1, 30, 32), np.nan, np.float32))
    for extra, says in (
        (["--task", "inpaint", "--input", "grey.png", "--mask", "small_mask.png"], "mask must be 0/1 of shape"),
        (["--task", "mri", "--input", "grey.png", "--acceleration", "3"], "cannot be sampled at acceleration 3"),
        (["--task", "superres", "--measurement", "bad_y.npz"], "measurement must be"),
        (["--task", "ct", "--input", "big.png"], "but the run makes 32x32"),
        (["--task", "deblur", "--input", "nothing.png"], "does not exist"),
        (["--task", "inpaint", "--input", "grey.png", "--method", "magic"], "--method must be one of"),
        (["--task", "deblur", "--input", "grey.png", "--method", "project"], "pseudo-inverse"),
        (["--task", "ct", "--measurement", "complex_y.npz"], "must be real"),
        (["--task", "ct", "--measurement", "nan_y.npz"], "NaN"),
        (["--task", "ct", "--input", "grey.png", "--method", "dds", "--zeta", "nan"], "zeta must be > 0"),
        (["--task", "ct", "--input", "grey.png", "--samples", "0"], "--samples must be at least 1"),
        (["--task", "ct", "--input", "grey.png", "--sampler", "nope"], "nope"),
    ):
        assert_one_line_error(difflab(*base, *extra, cwd=run), says)
        assert not (run / "refused").exists(), extra  # nothing half-written
    assert_one_line_error(difflab("edit", "--input", "grey.png", "--run", "ph", "--t0", "0", cwd=run), "t0 must lie")
    assert_one_line_error(difflab("restore", "--task", "ct", "--run", "ph", "--data", "brain", "--num", "1", cwd=run),
                          "but the run makes")


def _external(run, task):
    """A clean 32 x 32 image, the flags that measure it in difflab, and the same measurement written as a file made
    elsewhere (with the flags that describe it): the low-resolution PNG of an image constant on 4 x 4 blocks, a
    masked PNG and its mask, a blurred .npy and its kernel, k-space .npy and its columns, a sinogram and its angles.
    The low-resolution image is black and white, so that difflab's block averages are its values to the last bit."""
    import torch

    from difflab.inverse.restore import TaskConfig, build_operator
    from difflab.operators.images import gaussian_kernel
    from difflab.operators.radon import view_angles

    rng = np.random.default_rng(5)
    low = (rng.integers(0, 2, (8, 8)) * 255).astype(np.uint8)  # -1 / 1: 4 x 4 averages exact in float32
    clean = np.kron(low, np.ones((4, 4), np.uint8)) if task == "superres" else rng.integers(0, 256, (32, 32), np.uint8)
    Image.fromarray(clean).save(run / f"clean_{task}.png")
    x = torch.from_numpy(clean.astype(np.float32) / 127.5 - 1)[None, None]
    noise = {"superres": "0", "inpaint": "0", "deblur": "0.05", "mri": "0.02", "ct": "0.1"}[task]
    own = {"superres": [], "inpaint": ["--mask", "mask.png"], "deblur": ["--blur", "1.0"], "mri": [],
           "ct": ["--views", "20"]}[task]
    mask = np.zeros((32, 32), np.uint8)
    mask[::3] = 255  # every third row observed
    Image.fromarray(mask).save(run / "mask.png")
    tc = TaskConfig(task, float(noise), str(run / "mask.png"), blur=1.0, views=20, seed=3)
    y = build_operator(tc, (1, 32, 32)).measure(x, torch.Generator().manual_seed(3))
    if task == "superres":
        Image.fromarray(low).save(run / "low.png")
        files = ["--measurement", "low.png"]
    elif task == "inpaint":
        Image.fromarray(np.where(mask > 0, clean, 7).astype(np.uint8)).save(run / "masked.png")
        files = ["--measurement", "masked.png", "--mask", "mask.png"]
    elif task == "deblur":
        np.save(run / "blurred.npy", y[0].numpy())
        np.save(run / "kernel.npy", gaussian_kernel(1.0, 7).numpy())
        files = ["--measurement", "blurred.npy", "--kernel", "kernel.npy"]
    elif task == "mri":
        np.save(run / "kspace.npy", y[0, 0].numpy())
        np.save(run / "columns.npy", build_operator(tc, (1, 32, 32)).mask.numpy())
        files = ["--measurement", "kspace.npy", "--mask", "columns.npy"]
    else:
        np.save(run / "sinogram.npy", y[0, 0].numpy())
        np.save(run / "angles.npy", view_angles(20).numpy())
        files = ["--measurement", "sinogram.npy", "--angles", "angles.npy"]
    return ["--input", f"clean_{task}.png", *own], files, noise


@pytest.mark.parametrize("task", ["superres", "inpaint", "deblur", "mri", "ct"])
def test_a_degraded_file_made_elsewhere_restores_exactly_as_the_same_measurement_made_by_difflab(run, task):
    measured, external, noise = _external(run, task)
    common = ["restore", "--task", task, "--run", "ph", "--method", "dps", "--nfe", "3", "--seed", "3", "--noise",
              noise, "--quiet"]
    p = difflab(*common, *measured, "--out", f"own_{task}", cwd=run)
    assert p.returncode == 0, p.stderr
    p = difflab(*common, *external, "--out", f"ext_{task}", cwd=run)
    assert p.returncode == 0, p.stderr
    ours, theirs = (np.load(run / d / "restored.npz")["images"] for d in (f"own_{task}", f"ext_{task}"))
    np.testing.assert_array_equal(theirs, ours)
    np.testing.assert_array_equal(np.load(run / f"ext_{task}" / "measurement.npz")["y"],
                                  np.load(run / f"own_{task}" / "measurement.npz")["y"])
    report = (run / f"ext_{task}" / "report.md").read_text()
    assert "rows: measurement," in report and "| - | - |" in report  # no truth, no PSNR


def test_the_noise_of_an_external_image_is_estimated_from_its_finest_details():
    """Donoho's MAD estimate with known Gaussian noise: within 10 % on a blurred brain slice and on one with every
    third row observed, 25 % on a 2x downsampled one (more detail per pixel: it reads high); k-space and sinograms are
    refused (their signal fills every detail)."""
    import torch

    from difflab.data import DataConfig, build_dataset
    from difflab.inverse.external import details, estimate_noise
    from difflab.operators import MRI, Blur, Downsample, Inpaint, Radon

    g = torch.Generator().manual_seed(0)
    brain = build_dataset(DataConfig(name="brain", split="test", limit=1)).x  # (1, 1, 64, 64)
    for op, rel in ((Blur(1.0, (1, 64, 64), 0.05), 0.1), (Downsample(2, (1, 64, 64), 0.1), 0.25),
                    (Inpaint.box((1, 64, 64), 0.5, 0.05), 0.25)):
        y = op.measure(brain, g)
        assert estimate_noise(details(y, op)) == pytest.approx(op.noise_std, rel=rel), op.name
    for op in (MRI((1, 64, 64), 4, 0.08, 0, 0.1), Radon((1, 64, 64), 30, 0.5)):
        with pytest.raises(UserError, match="pass --noise"):
            details(op.measure(brain, g), op)


def test_a_degraded_file_that_does_not_fit_is_refused_in_one_line(run):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(run / "odd.png")
    np.save(run / "real.npy", np.zeros((32, 32), np.float32))
    for extra, words in (
            (["--task", "superres", "--measurement", "odd.png"], ("10x10", "whole factor")),
            (["--task", "inpaint", "--measurement", "grey.png"], ("--mask FILE",)),
            (["--task", "mri", "--measurement", "real.npy"], ("complex k-space",)),
            (["--task", "ct", "--measurement", "real.npy", "--angles", "real.npy"], ("angles",)),
            (["--task", "ct", "--measurement", "real.npy"], ("pass --noise",)),
            (["--task", "deblur", "--input", "grey.png", "--kernel", "real.npy"], ("--kernel describes",))):
        assert_one_line_error(difflab("restore", "--run", "ph", *extra, cwd=run), *words)
    assert_one_line_error(difflab("restore", "--run", "ph", "--task", "superres", "--input", "small_mask.png", cwd=run),
                          "--measurement FILE")
