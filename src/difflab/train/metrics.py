"""metrics.jsonl (one JSON line per logged step, rank 0) and its TensorBoard twin; on resume the file is cut back to
the checkpoint's step, so a resumed run reads as one uninterrupted run."""
from __future__ import annotations

import json
import math
from pathlib import Path

from difflab.config import RunConfig
from difflab.train.state import TrainState, lr_at


def record(metrics, events, cfg: RunConfig, st: TrainState, r, closing: bool = False) -> None:
    """One line of metrics.jsonl for step result r and one TensorBoard event (rank 0); `closing` marks a session's last step off the
    log_every cadence, which a resume drops so the file reads as one uninterrupted run."""
    if metrics is None:
        return
    row = {"step": st.step, "images": st.images, "loss": r.loss, "grad_norm": r.grad_norm,
           "lr": lr_at(cfg, st.images - cfg.train.batch_size), "seconds": round(st.seconds, 3)}
    if st.scaler.is_enabled():
        row["loss_scale"] = st.scaler.get_scale()
    if not r.applied:
        row["skipped"] = "fp16 overflow" if r.overflow else "non-finite"
    if closing:
        row["closing"] = True
    metrics.write(json.dumps({k: v if not isinstance(v, float) or math.isfinite(v) else None  # JSON has no NaN
                              for k, v in row.items()}) + "\n")
    metrics.flush()
    if events is not None:
        events.scalars(st.step, {f"train/{k}": v for k, v in row.items()
                                 if k not in ("step", "skipped", "closing") and isinstance(v, (int, float))
                                 and math.isfinite(v)})


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the metric lines up to the checkpoint we resume from (none for a fresh run); a line cut by a crash
    mid-write is dropped."""
    keep = []
    for ln in path.read_text().splitlines() if path.exists() and step else []:
        try:
            row = json.loads(ln)
            if row["step"] <= step and not row.get("closing"):
                keep.append(ln)
        except (ValueError, KeyError, TypeError):
            continue
    path.write_text("".join(ln + "\n" for ln in keep))
