"""What a sample is conditioned on: named tensors (class label, token ids, a low-resolution image, ...), each with a
null value, so one network is conditional and unconditional at once (condition dropout in training, classifier-free
guidance at sampling time); and the kinds of condition, each one module under conditions/ that registers itself."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Mapping

import torch
from torch import Tensor, nn

from difflab.errors import UserError

LABEL = "label"  # class index in [0, num_classes); its null value is num_classes (conditions/label.py)
TOKENS = "tokens"  # a caption: token ids (L,), or a frozen encoder's token features (L, d) (conditions/caption.py)
LOWRES = "lowres"  # the low-resolution image upsampled to full size (C, H, W); null = zeros (conditions/lowres.py)
MEASUREMENT = "measurement"  # an inverse problem's y per row (null = zeros): read by the posterior transforms and
# the projection hook (inverse/posterior.py), never by a network
INJECTIONS = ("embedding", "context", "concat", "target")  # where a network takes a condition in (ConditionKind)


@dataclass(frozen=True)
class Condition:
    """values[name] is (B, ...) for every field; nulls[name] is one example's null value (...)."""

    values: Mapping[str, Tensor]
    nulls: Mapping[str, Tensor]

    def __post_init__(self) -> None:
        if set(self.values) != set(self.nulls):
            raise ValueError(f"every condition field needs a null value: {sorted(self.values)} vs {sorted(self.nulls)}")
        if len({len(v) for v in self.values.values()}) > 1:
            raise ValueError("condition fields must share the batch size")

    @classmethod
    def labels(cls, y: Tensor, num_classes: int) -> "Condition":
        """Class labels (B,) in [0, num_classes); the null label is num_classes."""
        y = torch.as_tensor(y, dtype=torch.long)
        bad = y[(y < 0) | (y >= num_classes)]
        if len(bad):
            raise UserError(f"class {int(bad[0])} is out of range: the model knows classes 0..{num_classes - 1}")
        return cls({LABEL: y}, {LABEL: torch.tensor(num_classes, device=y.device)})

    @classmethod
    def tokens(cls, ids: Tensor, null: Tensor) -> "Condition":
        """Caption token ids (B, L); `null` (L,) is the empty caption (all padding)."""
        return cls({TOKENS: torch.as_tensor(ids, dtype=torch.long)}, {TOKENS: null.to(torch.long)})

    def without(self, name: str) -> "Condition | None":
        """The other fields (None when `name` was the only one)."""
        rest = {k: v for k, v in self.values.items() if k != name}
        return Condition(rest, {k: self.nulls[k] for k in rest}) if rest else None

    def join(self, other: "Condition") -> "Condition":
        """The fields of both (e.g. a label and a caption), same rows."""
        return Condition({**self.values, **other.values}, {**self.nulls, **other.nulls})

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(sorted(self.values))

    def __getitem__(self, name: str) -> Tensor:
        return self.values[name]

    def __len__(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0

    def _map(self, fn) -> "Condition":
        return Condition({k: fn(v) for k, v in self.values.items()}, self.nulls)

    def index(self, idx) -> "Condition":
        """Rows idx (a slice, an index tensor or a boolean mask)."""
        return self._map(lambda v: v[idx])

    def repeat(self, n: int) -> "Condition":
        """The batch n times over: [c, c, ..., c], (n B, ...)."""
        return self._map(lambda v: v.repeat(n, *([1] * (v.ndim - 1))))

    def cat(self, other: "Condition") -> "Condition":
        """This batch followed by another's (the doubled batch of classifier-free guidance)."""
        if other.fields != self.fields:
            raise ValueError(f"cannot concatenate conditions with fields {self.fields} and {other.fields}")
        return Condition({k: torch.cat([v, other.values[k]]) for k, v in self.values.items()}, self.nulls)

    def null(self) -> "Condition":
        """Every row replaced by the null value: the unconditional model."""
        return self.drop(torch.ones(len(self), dtype=torch.bool))

    def drop(self, mask: Tensor) -> "Condition":
        """Rows where mask (B,) is true replaced by the null value (condition dropout)."""
        def one(k: str, v: Tensor) -> Tensor:
            m = mask.to(v.device).reshape(-1, *([1] * (v.ndim - 1)))
            return torch.where(m, self.nulls[k].to(v.device, v.dtype), v)  # null (...) broadcasts over the rows
        return Condition({k: one(k, v) for k, v in self.values.items()}, self.nulls)

    def to(self, device: torch.device | str) -> "Condition":
        return Condition({k: v.to(device) for k, v in self.values.items()},
                         {k: v.to(device) for k, v in self.nulls.items()})


def check_condition(takes: tuple[str, ...], fields: tuple[str, ...]) -> None:
    """Refuse a condition field the model does not take (one line for the user)."""
    extra = [f for f in fields if f not in takes]
    if extra:
        what = f"conditions {list(takes)}" if takes else "no condition (it was trained unconditionally)"
        raise UserError(f"the model takes {what}, not {extra[0]!r}: drop that option or train a model that takes it")


class ConditionKind:
    """One kind of condition: its field, its null, how training reads it from a dataset's rows, how a sampling request
    builds it, and where a network takes it in. `inject`: 'embedding' (module(values) (B, dim) is added to the noise
    embedding), 'context' (module(values) (B, L, width) is attended by cross-attention), 'concat' (values (B, c, H, W)
    join the input channels) or 'target' (read from the data for the objective, fed to no network: a classifier's
    label). Subclasses register themselves with @register_kind; a run takes a kind when from_config says so."""

    name: ClassVar[str] = ""  # the registry key, also the Condition field
    inject: ClassVar[str] = "embedding"
    module_name: ClassVar[str] = ""  # the network attribute its module is kept under (its checkpoint key); "": name
    request_key: ClassVar[str] = ""  # the sample-config field that asks for it (classes, prompts), if any
    missing: ClassVar[str] = ""  # one line for a request of it to a run that does not take it
    guides_unasked: ClassVar[bool] = False  # its request without values still names a target (example prompts)

    @property
    def field(self) -> str:
        return self.name

    @classmethod
    def from_config(cls, cfg) -> "ConditionKind | None":
        """The kind a run config asks for (None: the run does not take it); by default: named in cfg.conditions."""
        return cls() if cls.name in getattr(cfg, "conditions", ()) else None

    @classmethod
    def asked(cls, sc) -> bool:
        """Whether a sample config asks for this kind."""
        return bool(cls.request_key and getattr(sc, cls.request_key, None))

    def module(self, dim: int) -> nn.Module | None:
        """embedding: values (B, ...) -> (B, dim); context: values (B, ...) -> (B, L, width) with `.width`."""
        return None

    def channels(self, in_channels: int) -> int:
        """concat: the channels its values add to the network's input."""
        return 0

    def null(self, shape: tuple[int, ...]) -> Tensor:
        """One example's null value, for data examples of `shape`."""
        raise NotImplementedError

    def reader(self, data) -> Callable[[Tensor], Tensor]:
        """Training: rows idx of `data` (an ImageData) -> values (B, ...); refuses data without it in one line."""
        raise NotImplementedError

    def request(self, sc, n: int, shape: tuple[int, ...]) -> Tensor:
        """Sampling: the values (n, ...) of a sample config's request (the null rows when nothing is asked)."""
        null = self.null(shape)
        return null.expand(n, *null.shape).clone()

    def condition(self, values: Tensor, shape: tuple[int, ...]) -> Condition:
        """values (B, ...) as a Condition of this one field."""
        return Condition({self.field: values}, {self.field: self.null(shape).to(values.device)})


KINDS: dict[str, type[ConditionKind]] = {}  # every registered condition kind, by name


def register_kind(cls: type[ConditionKind]) -> type[ConditionKind]:
    """Class decorator: make a condition kind known (a run names it in cfg.conditions; built-ins ask the config)."""
    if not cls.name or cls.inject not in INJECTIONS:
        raise ValueError(f"a condition kind needs a name and inject in {INJECTIONS}: {cls.__name__}")
    KINDS[cls.name] = cls
    return cls


def joined(parts: list[Condition]) -> Condition | None:
    """The fields of every part, same rows (None for no part)."""
    out = None
    for c in parts:
        out = c if out is None else out.join(c)
    return out
