"""The class label: an index in [0, C) added to the noise embedding by a learned embedding (index C = the null label);
read from a labelled dataset, asked for by sample.classes (by index, or by the name recorded in data.class_names). A classifier's label is the same field, as its target."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor, nn

from difflab.condition import LABEL, Condition, ConditionKind, register_kind
from difflab.errors import UserError


@register_kind
@dataclass(frozen=True)
class LabelKind(ConditionKind):
    num_classes: int
    key: str = "unet.num_classes"  # the config key that sets num_classes (named in refusals)
    null_unless_asked: bool = False  # sampling without classes: the null label (trained with condition dropout)
    inject: str = "embedding"  # 'target' for a classifier: read from the data, embedded by no network

    name = LABEL
    module_name = "classes"
    request_key = "classes"
    missing = ("sample.classes needs a class-conditional run (trained with unet.num_classes > 0); this one takes none: "
               "guide it with a classifier (--classifier RUN)")

    @classmethod
    def from_config(cls, cfg) -> "LabelKind | None":
        """unet.num_classes / mlp.num_classes of a diffusion run; classifier.num_classes (the target) of a classifier."""
        if cfg.model == "classifier":
            return cls(cfg.classifier.num_classes, "classifier.num_classes", inject="target")
        if cfg.model != "diffusion":
            return None
        n = getattr(cfg, cfg.arch).num_classes
        return cls(n, f"{cfg.arch}.num_classes", cfg.train.cond_dropout > 0) if n else None

    def module(self, dim: int) -> nn.Module:
        return nn.Embedding(self.num_classes + 1, dim)  # (B,) labels -> (B, dim); row C: the null label

    def null(self, shape: tuple[int, ...]) -> Tensor:
        return torch.tensor(self.num_classes)

    def reader(self, data) -> Callable[[Tensor], Tensor]:
        if data.labels is None or data.num_classes > self.num_classes:
            have = "no labels" if data.labels is None else f"{data.num_classes} classes"
            raise UserError(f"the model takes {self.num_classes} classes but the data has {have}: set {self.key}")
        labels = data.labels
        return lambda idx: labels[idx]

    def request(self, sc, n: int, shape: tuple[int, ...]) -> Tensor:
        """sample.classes cycled over the samples; without: the null label (condition dropout) or k mod C."""
        k = torch.arange(n)
        if sc.classes:
            return Condition.labels(torch.tensor(sc.classes)[k % len(sc.classes)], self.num_classes)[LABEL]
        return torch.full((n,), self.num_classes) if self.null_unless_asked else k % self.num_classes


def describe_classes(names: tuple[str, ...]) -> str:
    """'0 circle, 1 square': each label index with its name ('0..9' where the names are the indices, as MNIST's)."""
    if tuple(names) == tuple(str(k) for k in range(len(names))):
        return f"0..{len(names) - 1}"
    return ", ".join(f"{k} {name}" for k, name in enumerate(names))


def record_class_names(data_cfg, names: tuple[str, ...] | None):
    """data.class_names from the data at the start of a run; a resumed run's recorded names must be the data's."""
    if not names:
        return data_cfg
    if data_cfg.class_names and tuple(data_cfg.class_names) != tuple(names):
        raise UserError(f"the data's classes ({describe_classes(names)}) are not the run's "
                        f"({describe_classes(data_cfg.class_names)}): train on the data the run was trained on")
    return replace(data_cfg, class_names=tuple(names))


def class_indices(asked, names: tuple[str, ...]) -> tuple[int, ...]:
    """Classes asked by name or index (one, or a sequence) -> label indices: a name of the run first, else an integer
    (its range is checked where the label is made)."""
    out = []
    for v in [asked] if isinstance(asked, (str, int)) else list(asked):
        text = str(v).strip()
        if text in names:
            out.append(names.index(text))
            continue
        try:
            out.append(int(v) if not isinstance(v, (bool, float)) else int("x"))
        except (TypeError, ValueError):
            known = f"this run's classes are {describe_classes(names)}" if names else \
                "this run records no class names: pass indices like 0 or 0,1"
            raise UserError(f"unknown class {text!r}: {known}") from None
    return tuple(out)
