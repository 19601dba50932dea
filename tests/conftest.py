import os

import pytest
import torch

torch.set_num_threads(1)
# the suite's cache (MNIST arrays, the judge, feature statistics) is shared by its workers and never a user's home;
# set before any fixture runs, session-scoped ones included
os.environ.setdefault("DIFFLAB_CACHE", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                    ".cache"))

QUICK_JUDGE_STEPS = 400  # without the full judge cached: a test-only judge (test accuracy ~0.98), cached apart


@pytest.fixture(scope="session")
def judge():
    """The cached MNIST judge and its sidecar if there is one, else the quick test judge and None: trained once per
    machine and cached beside it, under a lock, so the suite's other worker waits for it and loads it."""
    from difflab.eval import judge as J

    from tests.runs import locked

    full, quick = J.judge_dir(), J.judge_dir().with_name(f"judge-quick-{QUICK_JUDGE_STEPS}")
    with locked(quick.parent / "judge-quick.lock"):
        for root in (full, quick):
            loaded = J._load(root)
            if loaded is not None:
                return loaded[0], (loaded[1] if root == full else None)
        model, meta = J.train_judge(max_steps=QUICK_JUDGE_STEPS, log=lambda _: None)
        J._save(model, meta, quick)
        return model.eval(), None
