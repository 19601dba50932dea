"""Class-conditional generation through the command line: a U-Net with a label embedding trained on MNIST samples the
class it is asked for, as an independent judge reads it; wrong conditions are refused in one line."""
import numpy as np
import torch

from difflab.eval.judge import _predict_probs
from tests.proc import assert_one_line_error, difflab

# MNIST at 14 x 14, a small U-Net with 10 classes: 1,500 steps of 32 (measured: judged accuracy 0.81 of 100)
CLASS_UNET = ["--data", "mnist", "--set", "data.limit=10000", "--set", "data.image_size=14",
              "--set", "unet.base_channels=16", "--set", "unet.channel_mult=[1,2]", "--set", "unet.attention_levels=[]",
              "--set", "unet.num_classes=10", "--set", "train.batch_size=32", "--set", "train.lr=2e-3",
              "--set", "train.warmup_images=2000", "--set", "train.ema_half_life_images=5000",
              "--set", "train.log_every=100", "--set", "train.max_images=48000", "--sample", "0"]


def _judged(npz, judge) -> np.ndarray:
    """Predicted digits of 14 x 14 samples, upsampled to the judge's 28 x 28."""
    x = torch.from_numpy(np.load(npz)["images"]).float()[:, None]
    x = torch.nn.functional.interpolate(x, size=28, mode="bilinear").round().clamp(0, 255).to(torch.uint8)[:, 0]
    return _predict_probs(judge[0], x.numpy()).argmax(1).numpy()


def test_a_class_conditional_run_samples_the_asked_class(tmp_path, judge):
    p = difflab("train", *CLASS_UNET, "--out", "cc", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = difflab("sample", "--run", "cc", "--num", "100", "--class", "0,1,2,3,4,5,6,7,8,9", "--sampler", "dpmpp_2m",
                "--nfe", "20", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    accuracy = float((_judged(tmp_path / "cc" / "samples.npz", judge) == np.arange(100) % 10).mean())
    print(f"judged accuracy of the asked class: {accuracy:.2f} (chance 0.10)")
    assert accuracy > 0.5
    p = difflab("sample", "--run", "cc", "--num", "20", "--class", "7", "--name", "sevens", "--sampler", "ddim",
                "--nfe", "20", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (_judged(tmp_path / "cc" / "sevens.npz", judge) == 7).mean() > 0.5
    assert_one_line_error(difflab("sample", "--run", "cc", "--class", "12", cwd=tmp_path), "class 12 is out of range")
    assert_one_line_error(difflab("sample", "--run", "cc", "--class", "x", cwd=tmp_path), "--class takes")
