import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch, tmp_path_factory):
    """Keep each test's cache where the suite's MNIST cache lives (shared), never in a user's home."""
    if "DIFFLAB_CACHE" not in os.environ:
        monkeypatch.setenv("DIFFLAB_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache"))


QUICK_JUDGE_STEPS = 600  # cold cache: a test-only judge (~40 s on one core), not written to the cache


@pytest.fixture(scope="session")
def judge():
    """The cached MNIST judge and its sidecar if there is one, else a quickly trained judge and None."""
    from difflab.eval import judge as J

    loaded = J._load(J.judge_dir())
    if loaded is not None:
        return loaded
    model, _ = J.train_judge(max_steps=QUICK_JUDGE_STEPS, log=lambda _: None)
    return model.eval(), None
