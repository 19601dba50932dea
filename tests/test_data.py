"""Tests for difflab.data: MNIST, image folders, .npz arrays, toy sets and the analytic Gaussian mixture."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.data import (
    DATASET_NAMES, DataConfig, GaussianMixture, ImageData, build_dataset, eight_mode_ring, gaussian_mixture,
    load_folder, load_mnist, load_npz, swiss_roll, to_uint8, to_unit_range, two_moons,
)
from difflab.data import build as build_mod
from difflab.errors import UserError


def raises_user_error(fn, *fragments: str) -> str:
    """Call fn, expect a one-line UserError whose message contains every fragment; return the message."""
    with pytest.raises(UserError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# ---------------------------------------------------------------- conversions, ImageData, DataConfig

def test_unit_range_round_trip_is_exact():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    x = to_unit_range(pixels)
    assert x.dtype == torch.float32 and x.shape == (16, 16)
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    np.testing.assert_array_equal(to_uint8(x), pixels)


def test_to_uint8_clamps_and_rounds():
    out = to_uint8(torch.tensor([-5.0, 5.0, 0.0, 1.0 / 127.5 - 1.0 + 0.003]))
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 255, 128, 1]  # 0.0 -> 127.5 -> rounds to even 128


def test_image_data_shape_and_len():
    data = ImageData(x=torch.zeros(5, 3, 4, 6), labels=torch.arange(5), num_classes=5)
    assert data.shape == (3, 4, 6) and len(data) == 5
    assert ImageData(x=torch.zeros(7, 2)).shape == (2,)
    with pytest.raises(ValueError):
        ImageData(x=torch.zeros(5, 2), labels=torch.arange(4), num_classes=4)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"name": "cifar"}, "data.name"),
        ({"name": "folder"}, "data.path"),
        ({"name": "npz", "path": ""}, "data.path"),
        ({"split": "val"}, "data.split"),
        ({"limit": -1}, "data.limit"),
        ({"limit": 2.5}, "data.limit"),
        ({"limit": True}, "data.limit"),
        ({"image_size": -3}, "data.image_size"),
        ({"channels": 2}, "data.channels"),
        ({"num_points": 0}, "data.num_points"),
        ({"name": "moons", "image_size": 32}, "images only"),
    ],
)
def test_data_config_rejects_bad_values(kwargs, fragment):
    raises_user_error(lambda: DataConfig(**kwargs), fragment)


def test_data_config_defaults_valid():
    for name in DATASET_NAMES:
        DataConfig(name=name, path="somewhere" if name in ("folder", "npz") else "")
    with pytest.raises(UserError, match="data.path is only read"):
        DataConfig(name="moons", path="somewhere")  # a path that would be ignored is refused


# ---------------------------------------------------------------- MNIST

def test_mnist_raw_label_counts():
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = load_mnist(split)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        counts = np.bincount(labels, minlength=10)
        assert counts.sum() == n and len(counts) == 10 and counts.min() > n // 20


@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_mnist_build_shapes_and_range(split, n):
    data = build_dataset(DataConfig(name="mnist", split=split))
    assert data.x.shape == (n, 1, 28, 28) and data.x.dtype == torch.float32
    assert data.x.min().item() == -1.0 and data.x.max().item() == 1.0
    assert data.labels.shape == (n,) and data.labels.dtype == torch.int64
    assert data.num_classes == 10 and set(data.labels.unique().tolist()) == set(range(10))


def test_mnist_limit_resize_channels():
    images, labels = load_mnist("test")
    data = build_dataset(DataConfig(split="test", limit=7))
    assert len(data) == 7
    np.testing.assert_array_equal(to_uint8(data.x[:, 0]), images[:7])
    assert data.labels.tolist() == labels[:7].tolist()
    small = build_dataset(DataConfig(split="test", limit=3, image_size=14, channels=3))
    assert small.x.shape == (3, 3, 14, 14) and small.num_classes == 10
    assert small.x.min() >= -1.0 and small.x.max() <= 1.0
    assert torch.equal(small.x[:, 0], small.x[:, 2])


# ---------------------------------------------------------------- folders

def _png(path: Path, size: tuple[int, int], mode: str = "RGB", value: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(arr, mode=None).save(path)
    return arr


def test_folder_labels_from_subfolders(tmp_path):
    a0 = _png(tmp_path / "cats" / "b.png", (8, 6), value=1)
    _png(tmp_path / "cats" / "a.PNG", (8, 6), value=2)
    _png(tmp_path / "dogs" / "deep" / "c.bmp", (8, 6), value=3)
    _png(tmp_path / ".hidden" / "x.png", (3, 3), value=4)  # skipped
    (tmp_path / "notes.txt").write_text("not an image")
    data = build_dataset(DataConfig(name="folder", path=str(tmp_path)))
    assert data.x.shape == (3, 3, 6, 8)
    assert data.labels.tolist() == [0, 0, 1] and data.num_classes == 2
    # sorted paths: cats/a.PNG, cats/b.png, dogs/deep/c.bmp
    np.testing.assert_array_equal(to_uint8(data.x[1]).transpose(1, 2, 0), a0)


def test_folder_no_labels_when_file_at_root(tmp_path):
    _png(tmp_path / "top.png", (5, 5), mode="L")
    _png(tmp_path / "sub" / "x.png", (5, 5), mode="L")
    data = load_folder(str(tmp_path))
    assert data.labels is None and data.num_classes is None
    assert data.x.shape == (2, 1, 5, 5)


def test_folder_mixed_modes_become_rgb_and_channels_convert(tmp_path):
    gray = _png(tmp_path / "a.png", (4, 4), mode="L", value=5)
    _png(tmp_path / "b.png", (4, 4), value=6)
    mixed = load_folder(str(tmp_path))
    assert mixed.x.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(to_uint8(mixed.x[0, 1]), gray)
    gray_set = build_dataset(DataConfig(name="folder", path=str(tmp_path), channels=1))
    assert gray_set.x.shape == (2, 1, 4, 4)
    np.testing.assert_array_equal(to_uint8(gray_set.x[0, 0]), gray)


def test_folder_resize_and_limit(tmp_path):
    _png(tmp_path / "a.png", (10, 6))
    _png(tmp_path / "b.jpg", (7, 9))
    _png(tmp_path / "c.webp", (12, 12))
    data = build_dataset(DataConfig(name="folder", path=str(tmp_path), image_size=8))
    assert data.x.shape == (3, 3, 8, 8)
    assert data.x.min() >= -1.0 and data.x.max() <= 1.0
    assert len(build_dataset(DataConfig(name="folder", path=str(tmp_path), image_size=8, limit=2))) == 2


def test_folder_size_mismatch_names_file(tmp_path):
    _png(tmp_path / "a.png", (8, 8))
    _png(tmp_path / "b.png", (9, 7))
    raises_user_error(lambda: load_folder(str(tmp_path)), "b.png", "9x7", "8x8", "data.image_size")


def test_folder_errors(tmp_path):
    raises_user_error(lambda: load_folder(str(tmp_path / "missing")), "does not exist", "data.path")
    file = tmp_path / "f.png"
    _png(file, (4, 4))
    raises_user_error(lambda: load_folder(str(file)), "not a directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    raises_user_error(lambda: load_folder(str(empty)), "no images")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"definitely not a png")
    raises_user_error(lambda: load_folder(str(bad)), "broken.png", "cannot read")


# ---------------------------------------------------------------- npz arrays

def test_npz_round_trip_layouts(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    labels = np.array([0, 2, 1, 2, 0])
    np.savez(tmp_path / "hwc.npz", x=nhwc, labels=labels)
    np.savez(tmp_path / "chw.npz", images=nhwc.transpose(0, 3, 1, 2), y=labels)
    np.savez(tmp_path / "hw.npz", x=nhwc[..., 0])
    a, b, c = (load_npz(str(tmp_path / f)) for f in ("hwc.npz", "chw.npz", "hw.npz"))
    assert a.x.shape == b.x.shape == (5, 3, 6, 7) and torch.equal(a.x, b.x)
    np.testing.assert_array_equal(to_uint8(a.x), nhwc.transpose(0, 3, 1, 2))
    assert a.labels.tolist() == labels.tolist() and a.num_classes == 3
    assert c.x.shape == (5, 1, 6, 7) and c.labels is None
    floats = np.linspace(-1, 1, 2 * 4 * 4).reshape(2, 1, 4, 4)
    np.savez(tmp_path / "f.npz", x=floats)
    d = build_dataset(DataConfig(name="npz", path=str(tmp_path / "f.npz"), channels=3, image_size=2))
    assert d.x.shape == (2, 3, 2, 2) and d.x.dtype == torch.float32


def test_npz_errors(tmp_path):
    def save(name: str, **arrays) -> str:
        np.savez(tmp_path / name, **arrays)
        return str(tmp_path / name)

    raises_user_error(lambda: load_npz(str(tmp_path / "nope.npz")), "does not exist")
    (tmp_path / "text.npz").write_text("hello")
    raises_user_error(lambda: load_npz(str(tmp_path / "text.npz")), "not a .npz")
    np.save(tmp_path / "plain.npy", np.zeros((2, 3, 3), np.uint8))
    raises_user_error(lambda: load_npz(str(tmp_path / "plain.npy")), "not a .npz")
    raises_user_error(lambda: load_npz(save("k.npz", data=np.zeros((2, 3, 3)), extra=np.ones(2))), "keys present: data, extra")
    raises_user_error(lambda: load_npz(save("d.npz", x=np.zeros((4, 4), np.uint8))), "shape (4, 4)")
    raises_user_error(lambda: load_npz(save("r.npz", x=np.full((2, 3, 3), 2.0))), "outside [-1, 1]")
    raises_user_error(lambda: load_npz(save("n.npz", x=np.full((2, 3, 3), np.nan))), "NaN")
    raises_user_error(lambda: load_npz(save("e.npz", x=np.zeros((0, 3, 3), np.uint8))), "empty")
    raises_user_error(lambda: load_npz(save("l.npz", x=np.zeros((3, 4, 4), np.uint8), labels=np.arange(2))), "3 images")
    raises_user_error(lambda: load_npz(save("i.npz", x=np.full((2, 3, 3), 300))), "0..255")
    objects = np.empty(2, dtype=object)
    objects[:] = [np.zeros((3, 3)), np.ones((3, 3))]
    raises_user_error(lambda: load_npz(save("o.npz", x=objects)), "Python objects")
    raises_user_error(lambda: load_npz(save("ol.npz", x=np.zeros((2, 3, 3), np.uint8), labels=objects)), "Python objects")


def test_build_rejects_empty_dataset(monkeypatch):
    monkeypatch.setitem(build_mod._LOADERS, "npz", lambda cfg: ImageData(x=torch.zeros(0, 1, 4, 4)))
    raises_user_error(lambda: build_dataset(DataConfig(name="npz", path="x.npz")), "dataset is empty")


def test_build_has_a_loader_per_name():
    assert set(build_mod._LOADERS) == set(DATASET_NAMES)


# ---------------------------------------------------------------- toy sets

@pytest.mark.parametrize("name", ["moons", "swiss_roll", "gmm"])
def test_toy_sets_shape_range_determinism(name):
    a = build_dataset(DataConfig(name=name, num_points=2000, seed=3))
    b = build_dataset(DataConfig(name=name, num_points=2000, seed=3))
    c = build_dataset(DataConfig(name=name, num_points=2000, seed=4))
    assert a.x.shape == (2000, 2) and a.x.dtype == torch.float32 and a.shape == (2,)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert a.x.abs().max() < 4.0 and a.x.std(0).min() > 0.5  # roughly fills [-3, 3]
    if a.labels is not None:
        assert torch.equal(a.labels, b.labels) and a.labels.max() < a.num_classes
    assert len(build_dataset(DataConfig(name=name, num_points=50, limit=10))) == 10


def test_toy_labels():
    assert two_moons(500).num_classes == 2 and set(two_moons(500).labels.tolist()) == {0, 1}
    assert swiss_roll(100).labels is None
    assert gaussian_mixture(100).num_classes == 8


# ---------------------------------------------------------------- Gaussian mixture

def _random_mixture(k: int = 3, d: int = 3, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(k, d, d, generator=g, dtype=torch.float64)
    covs = a @ a.transpose(1, 2) * 0.3 + 0.1 * torch.eye(d, dtype=torch.float64)  # full, anisotropic
    return GaussianMixture(torch.rand(k, generator=g, dtype=torch.float64) + 0.1, torch.randn(k, d, generator=g, dtype=torch.float64) * 2, covs)


def _autograd_score(gm: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_prob(x).sum(), x)
    return grad


@pytest.mark.parametrize("alpha, sigma", [(1.0, 0.0), (0.99, 0.1), (0.7, 0.7), (0.2, 0.98), (0.0, 1.0), (1.0, 3.0)])
def test_score_matches_autograd_default_mixture(alpha, sigma):
    gm = eight_mode_ring().diffused(alpha, sigma)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    x = torch.cat([x, gm.sample(64, torch.Generator().manual_seed(2))[0]])
    torch.testing.assert_close(gm.score(x), _autograd_score(gm, x), rtol=1e-9, atol=1e-9)


def test_score_matches_autograd_full_covariance():
    gm = _random_mixture().diffused(0.8, 0.3)
    x = torch.randn(128, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2
    torch.testing.assert_close(gm.score(x), _autograd_score(gm, x), rtol=1e-9, atol=1e-9)
    assert gm.score(x.reshape(4, 32, 3)).shape == (4, 32, 3)


def test_log_prob_single_component_matches_torch_distribution():
    gm = _random_mixture(k=1, d=3, seed=7)
    ref = torch.distributions.MultivariateNormal(gm.means[0], gm.covs[0])
    x = torch.randn(50, 3, dtype=torch.float64)
    torch.testing.assert_close(gm.log_prob(x), ref.log_prob(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha, sigma", [(1.0, 0.0), (0.6, 0.8)])
def test_log_prob_normalises_on_grid(alpha, sigma):
    gm = eight_mode_ring().diffused(alpha, sigma)
    h = 0.02
    ticks = torch.arange(-6.0, 6.0, h, dtype=torch.float64) + h / 2
    grid = torch.stack(torch.meshgrid(ticks, ticks, indexing="ij"), dim=-1)  # (600, 600, 2)
    total = gm.log_prob(grid).exp().sum().item() * h * h
    assert abs(total - 1.0) < 1e-6


def test_sample_moments_match_analytic():
    gm = eight_mode_ring()
    x, comp = gm.sample(200_000, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float64 and x.shape == (200_000, 2) and comp.shape == (200_000,)
    freq = torch.bincount(comp, minlength=8).double() / len(comp)
    torch.testing.assert_close(freq, gm.weights, atol=5e-3, rtol=0)
    torch.testing.assert_close(x.mean(0), gm.mean(), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), gm.covariance(), atol=0.03, rtol=0)
    assert gm.mean().norm() > 0.1  # unequal weights: the mean is off-centre
    again, comp_again = gm.sample(200_000, torch.Generator().manual_seed(0))
    assert torch.equal(again, x) and torch.equal(comp_again, comp)  # deterministic given the generator


def test_diffused_matches_empirical_forward_process():
    gm, g = _random_mixture(seed=3), torch.Generator().manual_seed(9)
    alpha, sigma = 0.6, 0.8
    x0, _ = gm.sample(200_000, g)
    xt = alpha * x0 + sigma * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    target = gm.diffused(alpha, sigma)
    torch.testing.assert_close(xt.mean(0), target.mean(), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(xt.T), target.covariance(), atol=0.04, rtol=0)


def test_default_mixture_fills_box():
    gm = eight_mode_ring()
    assert gm.weights.dtype == torch.float64 and abs(gm.weights.sum().item() - 1) < 1e-12
    assert len(set(gm.weights.tolist())) == 8  # unequal weights
    x, _ = gm.sample(5000, torch.Generator().manual_seed(0))
    assert x.abs().max() < 3.5 and x.abs().max() > 2.0


def test_mixture_rejects_bad_parameters():
    eye = torch.eye(2, dtype=torch.float64)[None]
    raises_user_error(lambda: GaussianMixture(torch.ones(2), torch.zeros(2, 2), eye), "covs (K, D, D)")
    raises_user_error(lambda: GaussianMixture(torch.tensor([-1.0]), torch.zeros(1, 2), eye), "positive")
    raises_user_error(lambda: GaussianMixture(torch.ones(1), torch.zeros(1, 2), -eye), "positive definite")
    raises_user_error(lambda: eight_mode_ring().diffused(0.0, 0.0), "positive definite")
    assert math.isfinite(eight_mode_ring().diffused(0.0, 1.0).log_prob(torch.zeros(2)).item())
