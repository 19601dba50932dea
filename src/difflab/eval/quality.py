"""Sample quality against reference data: FID, KID, precision / recall in a feature space, sliced Wasserstein for
points; every number with its sample count and a spread (over sampling seeds, or a bootstrap of one set)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from difflab.errors import UserError
from difflab.eval.features import Extractor, cached_features
from difflab.eval.metrics import Stats, frechet_distance, kid, precision_recall, sliced_wasserstein

METRICS = ("fid", "kid", "pr")
BOOTSTRAPS = 5


@dataclass(frozen=True)
class Row:
    metric: str
    value: float
    spread: float  # standard deviation over seeds (or bootstrap resamples)
    n: int  # generated samples per evaluation
    n_ref: int
    how: str  # "2 seeds", "bootstrap of 5"


@dataclass(frozen=True)
class QualityReport:
    rows: tuple[Row, ...]
    features: str
    reference: str

    def table(self) -> str:
        out = [f"sample quality in the {self.features} feature space against {self.reference}",
               f"{'metric':<12}{'value':>12}{'spread':>12}   samples / reference"]
        out += [f"{r.metric:<12}{r.value:>12.4f}{r.spread:>12.4f}   {r.n} / {r.n_ref} ({r.how}, 1 s.d.)"
                for r in self.rows]
        return "\n".join(out)

    def as_dict(self) -> dict:
        return {"features": self.features, "reference": self.reference,
                "metrics": {r.metric: {"value": r.value, "spread": r.spread, "n": r.n, "n_ref": r.n_ref,
                                       "how": r.how} for r in self.rows}}


def check_images(images: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Same size and channels as the reference, uint8 pixels."""
    if images.dtype != np.uint8:
        raise UserError(f"{what} must be uint8 pixels 0..255, got {images.dtype}")
    if images.shape[1:] != ref.shape[1:]:
        raise UserError(f"{what} have shape {images.shape[1:]} but the reference images {ref.shape[1:]}: compare "
                        "images of one size and channel count (resize with data.image_size)")


def _values(metrics: Sequence[str], real: torch.Tensor, fake: torch.Tensor, ref_stats: Stats,
            g: torch.Generator) -> dict[str, float]:
    out = {}
    if "fid" in metrics:
        out["fid"] = frechet_distance(Stats.of(fake), ref_stats)
    if "kid" in metrics:
        out["kid"] = kid(real, fake, subsets=20, generator=g)[0]
    if "pr" in metrics:
        out["precision"], out["recall"] = precision_recall(real[: max(len(fake), 2)], fake)
    return out


def evaluate_images(sets: list[np.ndarray], reference: np.ndarray, extractor: Extractor, metrics: Sequence[str],
                    reference_name: str, log: Callable[[str], None] = lambda s: None, seed: int = 0) -> QualityReport:
    """Metrics of generated uint8 image sets (one per sampling seed) against reference images."""
    for s in sets:
        check_images(s, reference, "the generated images")
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise UserError(f"metrics must be among {METRICS}, got {sorted(unknown)}")
    real = cached_features(reference, extractor, log)
    ref_stats = Stats.of(real)
    g = torch.Generator().manual_seed(seed)
    fakes = [extractor(s, log) for s in sets]
    if len(fakes) > 1:
        per = [_values(metrics, real, f, ref_stats, g) for f in fakes]
        how = f"{len(fakes)} seeds"
    else:  # one set: bootstrap it for the spread; the value is that of the set itself
        f = fakes[0]
        per = [_values(metrics, real, f, ref_stats, g)]
        per += [_values(metrics, real, f[torch.randint(len(f), (len(f),), generator=g)], ref_stats, g)
                for _ in range(BOOTSTRAPS)]
        how = f"bootstrap of {BOOTSTRAPS}"
    rows = []
    for key in per[0]:
        vals = torch.tensor([p[key] for p in per], dtype=torch.float64)
        value = float(vals.mean()) if len(fakes) > 1 else float(vals[0])
        spread = float(vals.std()) if len(vals) > 1 else 0.0
        rows.append(Row(key, value, spread, len(fakes[0]), len(real), how))
    return QualityReport(tuple(rows), extractor.name, reference_name)


def evaluate_points(sets: list[torch.Tensor], reference: torch.Tensor, reference_name: str,
                    seed: int = 0) -> QualityReport:
    """Sliced Wasserstein distance of generated point sets to reference points (no feature space)."""
    g = torch.Generator().manual_seed(seed)
    vals = torch.tensor([sliced_wasserstein(s, reference, generator=g) for s in sets])
    spread = float(vals.std()) if len(vals) > 1 else 0.0
    return QualityReport((Row("sliced_w2", float(vals.mean()), spread, len(sets[0]), len(reference),
                              f"{len(sets)} seeds"),), "data", reference_name)


def load_images(path: str | Path) -> np.ndarray:
    """uint8 images from a .npz (key images or x) or a folder, (N, H, W) or (N, H, W, C), without unpickling."""
    from difflab.data.build import build_dataset
    from difflab.data.dataset import DataConfig

    p = Path(path)
    if not p.exists():
        raise UserError(f"{p} does not exist: pass a .npz of images or a folder of image files")
    return image_array(build_dataset(DataConfig(name="npz" if p.is_file() else "folder", path=str(p))).x)


def image_array(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (N, H, W) grey or (N, H, W, C)."""
    from difflab.data.dataset import to_uint8

    imgs = to_uint8(x).transpose(0, 2, 3, 1)
    return imgs[..., 0] if imgs.shape[-1] == 1 else imgs
