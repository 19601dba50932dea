import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch, tmp_path_factory):
    """Keep each test's cache where the suite's MNIST cache lives (shared), never in a user's home."""
    if "DIFFLAB_CACHE" not in os.environ:
        monkeypatch.setenv("DIFFLAB_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache"))
