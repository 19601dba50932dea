"""The class label: an index in [0, C) added to the noise embedding by a learned embedding (index C = the null label);
read from a labelled dataset, asked for by sample.classes. A classifier's label is the same field, as its target."""
from __future__ import annotations

from dataclasses import dataclass
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
