"""A short Markdown report per run: settings, timings, numbers, figures."""
from __future__ import annotations

import platform
from pathlib import Path

import torch

from difflab.config import RunConfig, dump_yaml


def write_report(out: str | Path, title: str, cfg: RunConfig, facts: dict[str, str], figures: dict[str, str],
                 notes: str = "") -> Path:
    """Write out/report.md: a table of facts, the figures with captions, the full config."""
    out = Path(out)
    rows = "\n".join(f"| {k} | {v} |" for k, v in facts.items())
    figs = "\n\n".join(f"**{cap}**\n\n![{cap}]({name})" for name, cap in figures.items() if (out / name).exists())
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    text = f"""# {title}

| | |
|---|---|
{rows}
| machine | {machine} |

{notes}

{figs}

## Configuration

```yaml
{dump_yaml(cfg)}```
"""
    path = out / "report.md"
    path.write_text(text)
    return path
