"""The caption: token ids (L,) by the text encoder's tokenizer, encoded to per-token features that the U-Net attends
to by cross-attention; the null caption is all padding. Read from a captioned dataset, asked for by sample.prompts
(without: example prompts of the two-digit canvas)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch
from torch import Tensor, nn

from difflab.condition import TOKENS, ConditionKind, register_kind
from difflab.conditions.language import example_prompts
from difflab.conditions.text import TextConditioner, TextConfig, WordTokenizer, tokenizer_for
from difflab.errors import UserError


@register_kind
@dataclass(frozen=True)
class CaptionKind(ConditionKind):
    text: TextConfig

    name = TOKENS
    inject = "context"
    module_name = "text"
    request_key = "prompts"
    guides_unasked = True
    missing = ("a prompt needs a text-to-image run (trained with --set text.encoder=transformer on captioned data, "
               "e.g. --data mnist_pairs); this run takes no text")

    @classmethod
    def from_config(cls, cfg) -> "CaptionKind | None":
        return cls(cfg.text) if cfg.model == "diffusion" and cfg.text.enabled else None

    @cached_property
    def tokenizer(self) -> WordTokenizer:
        return tokenizer_for(self.text)

    def module(self, dim: int) -> nn.Module:
        return TextConditioner(self.text)  # (B, L) ids -> (B, L, width)

    def null(self, shape: tuple[int, ...]) -> Tensor:
        return torch.full((self.tokenizer.max_tokens,), self.tokenizer.pad, dtype=torch.long)

    def reader(self, data) -> Callable[[Tensor], Tensor]:
        if data.captions is None:
            raise UserError("the model reads captions (text.encoder is set) but this data has none: train on "
                            "--data mnist_pairs, or drop text.encoder")
        tokens = self.tokenizer(data.captions)  # (N, L), tokenized once
        return lambda idx: tokens[idx]

    def request(self, sc, n: int, shape: tuple[int, ...]) -> Tensor:
        """sample.prompts cycled over the samples, else example prompts."""
        prompts = tuple(sc.prompts[k % len(sc.prompts)] for k in range(n)) if sc.prompts else example_prompts(n)
        return self.tokenizer(prompts)
