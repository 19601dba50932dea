"""The README's Python examples run as written (the pipeline's on a tiny trained run at runs/mnist, 14 x 14 so that
its 250 ancestral steps and 1000-term bound are cheap), and its table of config keys is the generated one."""
import re
from pathlib import Path

import torch

from difflab.config_doc import config_table
from tests.proc import difflab

README = Path(__file__).resolve().parents[1] / "README.md"
TINY_MNIST = ["--data", "mnist", "--set", "data.limit=128", "--set", "data.image_size=14", "--set", "unet.base_channels=8",
              "--set", "unet.channel_mult=[1,2]", "--set", "unet.attention_levels=[1]", "--max-images", "128",
              "--set", "train.batch_size=32", "--sample", "0"]


def test_the_readme_python_examples_run(tmp_path, monkeypatch):
    assert difflab("train", *TINY_MNIST, "--out", "runs/mnist", "--quiet", cwd=tmp_path).returncode == 0
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 2
    scopes = []
    for code in blocks:
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102  our own README, not user input
        scopes.append(scope)
    pipe, api = scopes
    assert pipe["x"].shape == (16, 1, 14, 14) and pipe["x"].abs().max() <= 1 and (tmp_path / "grid.png").is_file()
    assert pipe["nats"].shape == (4,) and torch.isfinite(pipe["nats"]).all() and torch.isfinite(pipe["bound"]).all()
    assert torch.isfinite(api["x"]).all() and api["x"].shape == (4, 1, 28, 28) and torch.isfinite(api["loss"])


def test_the_readme_config_table_is_the_generated_one():
    text = README.read_text()
    table = re.search(r"<!-- config-table[^\n]*-->\n(.*?)\n<!-- /config-table -->", text, re.S).group(1)
    assert table == config_table(), "regenerate it: difflab config --show --markdown"
