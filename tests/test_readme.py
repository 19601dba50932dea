"""The README's Python examples run as written."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks
    for code in blocks:
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102  our own README, not user input
    assert torch.isfinite(scope["x"]).all() and scope["x"].shape == (4, 1, 28, 28) and torch.isfinite(scope["loss"])
