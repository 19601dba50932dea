"""The caption: token ids (L,) by the text encoder's tokenizer, encoded to per-token features that the U-Net attends
to by cross-attention, the null caption all padding; or, for a frozen Hugging Face encoder, its features (L, d)
themselves, the null caption its features of the empty prompt. Read from a captioned dataset, asked for by sample.prompts
(without: example prompts of the two-digit canvas)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch
from torch import Tensor, nn

from difflab.condition import TOKENS, ConditionKind, register_kind
from difflab.conditions.frozen_text import FrozenText, encoder_folder
from difflab.conditions.language import example_prompts
from difflab.conditions.text import TextConditioner, TextConfig, WordTokenizer, tokenizer_for
from difflab.errors import UserError
from difflab.utils import cache_dir


@register_kind
@dataclass(frozen=True)
class CaptionKind(ConditionKind):
    text: TextConfig

    name = TOKENS
    inject = "context"
    module_name = "text"
    request_key = "prompts"
    guides_unasked = True
    missing = ("a prompt needs a text-to-image run (trained with --set text.encoder=transformer or minilm on "
               "captioned data, e.g. --data mnist_pairs); this run takes no text")

    @classmethod
    def from_config(cls, cfg) -> "CaptionKind | None":
        return cls(cfg.text) if cfg.model == "diffusion" and cfg.text.enabled else None

    @cached_property
    def tokenizer(self) -> WordTokenizer:
        return tokenizer_for(self.text)

    @cached_property
    def frozen(self) -> FrozenText:
        """A frozen Hugging Face encoder (text.encoder=minilm / bert): texts -> (B, L, d) features."""
        return FrozenText(encoder_folder(self.text.encoder, self.text.path), self.text.max_tokens)

    def encode(self, texts: tuple[str, ...]) -> Tensor:
        """What the field holds for these texts: token ids (B, L), or a frozen encoder's features (B, L, d)."""
        return self.frozen(texts) if self.text.frozen else self.tokenizer(texts)

    def module(self, dim: int) -> nn.Module:
        return TextConditioner(self.text)  # (B, L) ids or (B, L, d) features -> (B, L, width)

    @cached_property
    def _null(self) -> Tensor:
        """All padding for a word encoder; a frozen encoder's own features of the empty prompt (as Imagen and SD)."""
        if self.text.frozen:
            return self.frozen([""])[0]  # (L, d)
        return torch.full((self.tokenizer.max_tokens,), self.tokenizer.pad, dtype=torch.long)

    def null(self, shape: tuple[int, ...]) -> Tensor:
        return self._null

    def reader(self, data) -> Callable[[Tensor], Tensor]:
        if data.captions is None:
            raise UserError("the model reads captions (text.encoder is set) but this data has none: train on "
                            "--data mnist_pairs, or drop text.encoder")
        if self.text.frozen:  # each distinct caption encoded once, cached by content
            feats, index = self.frozen.cached(data.captions, cache_dir() / "text_features")
            return lambda idx: feats[index[idx]]
        tokens = self.tokenizer(data.captions)  # (N, L), tokenized once
        return lambda idx: tokens[idx]

    def request(self, sc, n: int, shape: tuple[int, ...]) -> Tensor:
        """sample.prompts cycled over the samples, else example prompts."""
        prompts = tuple(sc.prompts[k % len(sc.prompts)] for k in range(n)) if sc.prompts else example_prompts(n)
        return self.encode(prompts)
