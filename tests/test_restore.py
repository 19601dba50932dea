"""difflab restore and difflab edit end to end on a tiny phantom run: every task with its baselines and a diffusion
method writes its figure, arrays and report; input that cannot work is refused in one line."""
import json

import numpy as np
import pytest
from PIL import Image

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
                                         ("mri", "moment"), ("ct", "dps")])
def test_every_task_restores_with_its_baselines(run, task, method):
    p = difflab("restore", "--task", task, "--run", "ph", "--data", "phantoms", "--num", "2", "--resize",
                "--method", method, "--nfe", "4", "--jumps", "2", "--out", f"r_{task}", "--quiet", cwd=run)
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


def test_edit_starts_from_the_noised_input(run):
    p = difflab("edit", "--input", "grey.png", "--run", "ph", "--t0", "0.3", "--num", "2", "--nfe", "4", "--out", "ed",
                "--quiet", cwd=run)
    assert p.returncode == 0, p.stderr
    assert np.load(run / "ed" / "edited.npz")["images"].shape == (2, 1, 32, 32) and (run / "ed" / "edit.png").is_file()


def test_restore_input_that_cannot_work_is_one_line(run):
    base = ["restore", "--run", "ph", "--nfe", "3"]
    np.savez(run / "bad_y.npz", y=np.zeros((1, 1, 5, 5), np.float32))
    for extra, says in (
        (["--task", "inpaint", "--input", "grey.png", "--mask", "small_mask.png"], "mask must be 0/1 of shape"),
        (["--task", "mri", "--input", "grey.png", "--acceleration", "3"], "cannot be sampled at acceleration 3"),
        (["--task", "superres", "--measurement", "bad_y.npz"], "measurement must be"),
        (["--task", "ct", "--input", "big.png"], "but the run makes 32x32"),
        (["--task", "deblur", "--input", "nothing.png"], "does not exist"),
        (["--task", "inpaint", "--input", "grey.png", "--method", "magic"], "--method must be one of"),
        (["--task", "deblur", "--input", "grey.png", "--method", "project"], "pseudo-inverse"),
    ):
        assert_one_line_error(difflab(*base, *extra, cwd=run), says)
    assert_one_line_error(difflab("edit", "--input", "grey.png", "--run", "ph", "--t0", "0", cwd=run), "t0 must lie")
    assert_one_line_error(difflab("restore", "--task", "ct", "--run", "ph", "--data", "brain", "--num", "1", cwd=run),
                          "but the run makes")
