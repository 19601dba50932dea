"""difflab eval fid|kid|pr|all end to end with a feature network given as a TorchScript file; bad input."""
import json

import numpy as np
import torch

from tests.proc import assert_one_line_error, difflab


class Tiny(torch.nn.Module):
    """A fixed random feature map: conv -> ReLU -> global mean, 16-d."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 5, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean((2, 3))


def blobs(n: int, seed: int, radius: float) -> np.ndarray:
    """uint8 grey 16 x 16 images of a bright disc of the given radius at a random place."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16]
    cy, cx = g.uniform(4, 12, (2, n, 1, 1))
    return (255 * ((yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2)).astype(np.uint8)


def test_quality_metrics_from_the_cli_order_sets_the_right_way(tmp_path):
    torch.jit.save(torch.jit.script(Tiny()), str(tmp_path / "tiny.pt"))
    np.savez(tmp_path / "ref.npz", images=blobs(400, 0, 3.0))
    np.savez(tmp_path / "same.npz", images=blobs(400, 1, 3.0))
    np.savez(tmp_path / "other.npz", images=blobs(400, 2, 5.5))
    got = {}
    for name in ("same", "other"):
        p = difflab("eval", "all", "--images", f"{name}.npz", "--reference", "ref.npz", "--features", "tiny.pt",
                    "--json", f"{name}.json", "--quiet", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert "fid" in p.stdout and "400 / 400 (bootstrap of 5" in p.stdout
        got[name] = json.loads((tmp_path / f"{name}.json").read_text())["metrics"]
    assert got["same"]["fid"]["value"] < 0.2 * got["other"]["fid"]["value"]
    assert got["same"]["kid"]["value"] < got["other"]["kid"]["value"]
    assert got["same"]["precision"]["value"] > 0.6 > got["other"]["precision"]["value"]
    assert all(m["spread"] > 0 for m in got["same"].values())  # a spread comes with every number


class Flat(torch.nn.Module):
    """A feature network of the wrong output shape: one number per image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((1, 2, 3))


def test_quality_bad_input_is_one_line(tmp_path):
    torch.jit.save(torch.jit.script(Tiny()), str(tmp_path / "tiny.pt"))
    torch.jit.save(torch.jit.script(Flat()), str(tmp_path / "flat.pt"))
    np.savez(tmp_path / "wide.npz", images=np.full((50, 16, 16), 3.0, np.float32))  # not in [-1, 1] or 0..255
    np.savez(tmp_path / "ref.npz", images=blobs(50, 0, 3.0))
    np.savez(tmp_path / "big.npz", images=np.zeros((50, 20, 20), np.uint8))
    np.savez(tmp_path / "two.npz", images=blobs(2, 1, 3.0))
    (tmp_path / "junk.pt").write_bytes(b"not a network")
    run = lambda *a: difflab("eval", *a, "--quiet", cwd=tmp_path)  # noqa: E731
    assert_one_line_error(run("fid", "--images", "big.npz", "--reference", "ref.npz", "--features", "tiny.pt"),
                          "shape")
    assert_one_line_error(run("pr", "--images", "two.npz", "--reference", "ref.npz", "--features", "tiny.pt"),
                          "need more than")
    assert_one_line_error(run("fid", "--images", "ref.npz", "--reference", "ref.npz", "--features", "junk.pt"),
                          "TorchScript")
    assert_one_line_error(run("fid", "--images", "ref.npz", "--reference", "ref.npz", "--features", "nothing.pt"),
                          "--features")
    assert_one_line_error(run("fid", "--images", "ref.npz", "--reference", "ref.npz", "--features", "flat.pt"),
                          "(N, D)")
    p = run("fid", "--images", "wide.npz", "--reference", "ref.npz", "--features", "tiny.pt")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
