"""The condition of each training example, in the fields the objective takes: each condition kind reads its own
field from the dataset's rows (conditions/), once checked against the data."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from difflab.condition import Condition, ConditionKind


class DataConditions:
    """conditions(idx) -> Condition of rows idx, or None when the objective takes none."""

    def __init__(self, kinds: Sequence[ConditionKind], fields: tuple[str, ...], data):
        kinds = [k for k in kinds if k.field in fields]
        missing = set(fields) - {k.field for k in kinds}
        if missing:
            raise ValueError(f"no condition kind of this run reads {sorted(missing)}")
        shape = tuple(data.x.shape[1:])
        self.readers = {k.field: k.reader(data) for k in kinds}  # each refuses data without its field
        self.nulls = {k.field: k.null(shape) for k in kinds}

    def __call__(self, idx: Tensor) -> Condition | None:
        if not self.readers:
            return None
        return Condition({f: read(idx) for f, read in self.readers.items()}, self.nulls)
