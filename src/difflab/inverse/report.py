"""What a restoration writes: restore.png (rows: truth, the measurement as the operator views it, each method; with
several samples their pixel standard deviation), restored.npz, measurement.npz with the task settings, and
report.md / report.json with PSNR, SSIM and ||A x - y|| / ||y|| per method."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from difflab.eval.grid import save_grid
from difflab.inverse.metrics import quality
from difflab.operators import Operator


def write_restoration(out: Path, op: Operator, y: Tensor, truth: Tensor | None, results: dict[str, Tensor],
                      std: Tensor | None, title: str, settings: dict | None) -> list[str]:
    """Write the restoration's files into `out` (made only now: a refused or failed restoration leaves no folder);
    the last entry of `results` is the diffusion restoration. Returns the report's lines."""
    shown = list(results.values()) + ([std * (2 / std.amax().clamp_min(1e-6)) - 1] if std is not None else [])
    rows = ([truth] if truth is not None else []) + [op.view(y)] + shown
    cols = min(len(y), 8)
    out.mkdir(parents=True, exist_ok=True)
    save_grid(torch.cat([r[:cols].cpu() for r in rows]), out / "restore.png", nrow=cols)
    restored = list(results.values())[-1]
    np.savez_compressed(out / "restored.npz", images=restored.numpy(), **({"std": std.numpy()} if std is not None else {}))
    np.savez_compressed(out / "measurement.npz", y=y.numpy(),  # with how it was measured, where flags can say it
                        **({"settings": np.array(json.dumps(settings))} if settings is not None else {}))
    lines = [title, "", "| method | PSNR (dB) | SSIM | consistency ||A x - y|| / ||y|| |", "|---|---:|---:|---:|"]
    report = {}
    for name, x in results.items():
        cons = float(op.consistency(x, y).mean())
        if truth is not None:
            psnr, ssim = quality(x, truth)
            report[name] = {"psnr": float(psnr.mean()), "ssim": float(ssim.mean()), "consistency": cons}
            lines.append(f"| {name} | {psnr.mean():.2f} | {ssim.mean():.3f} | {cons:.3f} |")
        else:
            report[name] = {"consistency": cons}
            lines.append(f"| {name} | - | - | {cons:.3f} |")
    k = "" if std is None else f", the pixel std of the samples (white: {float(std.amax()):.3f})"
    lines += ["", f"restore.png rows: {'truth, ' if truth is not None else ''}measurement, {', '.join(results)}{k}"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return lines
