"""Class-conditional generation through the command line: a U-Net with a label embedding trained on MNIST samples the
class it is asked for, as an independent reader says; wrong conditions are refused in one line."""
import numpy as np

from difflab.data.build import build_dataset
from difflab.data.dataset import DataConfig, to_uint8
from tests.oracles import DigitReader
from tests.proc import assert_one_line_error, difflab

# MNIST at 8 x 8, a small U-Net with 10 classes, 10 % of labels dropped (so it is also unconditional, for
# classifier-free guidance): 375 steps of 64 (read right ~0.6 at w = 1, ~0.9 at w = 3; chance 0.1)
CLASS_UNET = ["--data", "mnist", "--set", "data.limit=10000", "--set", "data.image_size=8",
              "--set", "unet.base_channels=16", "--set", "unet.channel_mult=[1,2]", "--set", "unet.attention_levels=[]",
              "--set", "unet.num_classes=10", "--set", "train.cond_dropout=0.1",
              "--set", "train.batch_size=64", "--set", "train.lr=3e-3",
              "--set", "train.warmup_images=2000", "--set", "train.ema_half_life_images=5000",
              "--set", "train.log_every=100", "--set", "train.max_images=24000", "--sample", "0"]


def test_a_class_conditional_run_samples_the_asked_class(tmp_path):
    read = DigitReader(8)
    real = build_dataset(DataConfig(name="mnist", split="test", image_size=8, limit=2000))
    assert (read(to_uint8(real.x)[:, 0]) == real.labels.numpy()).mean() > 0.8  # the reader reads real digits
    p = difflab("train", *CLASS_UNET, "--out", "cc", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    digits = lambda name: read(np.load(tmp_path / "cc" / f"{name}.npz")["images"])  # noqa: E731
    p = difflab("sample", "--run", "cc", "--num", "100", "--class", "0,1,2,3,4,5,6,7,8,9", "--sampler", "dpmpp_2m",
                "--nfe", "20", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    accuracy = float((digits("samples") == np.arange(100) % 10).mean())
    print(f"read accuracy of the asked class: {accuracy:.2f} (chance 0.10)")
    assert accuracy > 0.4
    p = difflab("sample", "--run", "cc", "--num", "20", "--class", "7", "--name", "sevens", "--sampler", "ddim",
                "--nfe", "20", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (digits("sevens") == 7).mean() > 0.3
    assert_one_line_error(difflab("sample", "--run", "cc", "--class", "12", cwd=tmp_path), "class 12 is out of range")
    assert_one_line_error(difflab("sample", "--run", "cc", "--class", "x", cwd=tmp_path), "unknown class 'x'", "0..9")
    # classifier-free guidance: w = 1 is the conditional model; w = 3 reads the class better
    p = difflab("sample", "--run", "cc", "--num", "100", "--class", "0,1,2,3,4,5,6,7,8,9", "--guidance", "1,3",
                "--sampler", "dpmpp_2m", "--nfe", "20", "--name", "cfg", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    w1, w3 = ((digits(f"cfg_w{w}") == np.arange(100) % 10).mean() for w in (1, 3))
    print(f"classifier-free guidance: read accuracy {w1:.2f} at w = 1, {w3:.2f} at w = 3")
    assert w1 == accuracy and w3 >= max(w1 + 0.1, 0.7) and (tmp_path / "cc" / "cfg_grid.png").is_file()
    for flags, says in ((["--guidance", "nan"], "--guidance takes"), (["--guidance=-1"], "finite number >= 0"),
                        (["--guidance", "2", "--guidance-interval", "3,1"], "0 <= lo < hi"),
                        (["--guidance-interval", "0.3,5"], "needs a scale")):
        assert_one_line_error(difflab("sample", "--run", "cc", "--class", "3", *flags, cwd=tmp_path), says)
    assert_one_line_error(difflab("sample", "--run", "cc", "--guidance", "2", cwd=tmp_path), "--class")
    # classifier guidance through the CLI: a noise-conditional classifier of the same data and size
    clf = ["--data", "mnist", "--set", "data.limit=2000", "--set", "classifier.channel_mult=[1,2]",
           "--set", "classifier.attention_levels=[]", "--set", "classifier.base_channels=8", "--max-images", "256",
           "--quiet"]
    assert difflab("train-classifier", *clf, "--set", "data.image_size=8", "--out", "clf", cwd=tmp_path).returncode == 0
    p = difflab("sample", "--run", "cc", "--classifier", "clf", "--class", "3", "--guidance", "2", "--num", "8",
                "--nfe", "8", "--name", "cg", "--quiet", cwd=tmp_path)
    assert p.returncode == 0 and np.load(tmp_path / "cc" / "cg.npz")["images"].shape == (8, 8, 8), p.stderr
    assert difflab("train-classifier", *clf, "--out", "clf28", cwd=tmp_path).returncode == 0  # 28 x 28 images
    assert_one_line_error(difflab("sample", "--run", "cc", "--classifier", "clf28", "--class", "3", cwd=tmp_path),
                          "shape")
    assert_one_line_error(difflab("sample", "--run", "cc", "--classifier", "cc", "--class", "3", cwd=tmp_path),
                          "classifier")

