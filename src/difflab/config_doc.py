"""Every config key with its default and meaning, read from the config dataclasses and their one-line comments:
`difflab config --show` and the README's table are both generated here, so they cannot drift from the code."""
from __future__ import annotations

import dataclasses
import inspect
import re
import typing

from difflab.config import RunConfig

FIELD = re.compile(r"^\s{4}(\w+):[^#]*?(?:#\s*(.*))?$")  # `    name: type = default  # meaning`
MORE = re.compile(r"^\s{4}#\s*(.*)$")  # a comment line continuing the one above


def comments(cls: type) -> dict[str, str]:
    """Field name -> its trailing comment (with continuation lines) in the class body."""
    out: dict[str, str] = {}
    last = None
    for line in inspect.getsource(cls).splitlines():
        m = FIELD.match(line)
        if m and not line.lstrip().startswith(("def ", "return", "if ", "raise")):
            last = m.group(1)
            out[last] = (m.group(2) or "").strip()
            continue
        m = MORE.match(line)
        if m and last is not None:
            out[last] = f"{out[last]} {m.group(1).strip()}".strip()
        else:
            last = None
    return out


def _default(f: dataclasses.Field) -> object:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _show(v: object) -> str:
    if v is None:
        return "unset"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, tuple):
        return "[" + ",".join(_show(x) for x in v) + "]"
    if isinstance(v, str):
        return v or '""'
    return f"{v:g}" if isinstance(v, float) else str(v)


def config_rows(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, meaning) for every leaf key, sections in declaration order."""
    hints, notes, rows = typing.get_type_hints(cls), comments(cls), []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += config_rows(hints[f.name], f"{prefix}{f.name}.")
        else:
            rows.append((prefix + f.name, _show(_default(f)), notes.get(f.name, "")))
    return rows


def config_table() -> str:
    """The Markdown table of every key (the README's copy is checked against this)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    bar = "\\|"  # a literal | inside a Markdown cell
    lines += [f"| `{k}` | `{d}` | {m.replace('|', bar)} |" for k, d, m in config_rows()]
    return "\n".join(lines)


def config_text() -> str:
    """The same as aligned plain text for a terminal."""
    rows = config_rows()
    wk, wd = max(len(k) for k, _, _ in rows), min(24, max(len(d) for _, d, _ in rows))
    return "\n".join(f"{k:<{wk}}  {d:<{wd}}  {m}" for k, d, m in rows)
