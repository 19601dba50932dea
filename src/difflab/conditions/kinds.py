"""The condition kinds a run takes: every registered kind asks the run's config (the built-in ones read
unet.num_classes, text.encoder and unet.lowres_factor; a kind defined elsewhere is named in the config's
`conditions` list)."""
from __future__ import annotations

from difflab.condition import KINDS, ConditionKind
from difflab.conditions import caption, label, lowres  # noqa: F401  (the built-in kinds register themselves)
from difflab.errors import UserError


def kinds_for(cfg) -> tuple[ConditionKind, ...]:
    """The kinds of condition a run config asks for, in registration order."""
    unknown = [name for name in getattr(cfg, "conditions", ()) if name not in KINDS]
    if unknown:
        raise UserError(f"conditions names {unknown[0]!r}, which no condition kind registers: known are "
                        f"{sorted(KINDS)} (import the module that defines it first)")
    return tuple(k for k in (K.from_config(cfg) for K in KINDS.values()) if k is not None)
