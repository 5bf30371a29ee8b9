"""The pieces a model card is made of (:mod:`kit.card`): blocks, and how values, pairs and records become them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_ROWS = 25


@dataclass
class Block:
    """One piece of a card: ``kind`` is ``h1``, ``h2``, ``p``, ``list``, ``table`` or ``code``."""

    kind: str
    text: str = ""
    items: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _pairs(values: Mapping[str, Any], skip: Iterable[str] = ()) -> Block:
    left_out = set(skip)
    return Block("table", headers=["field", "value"],
                 rows=[[k, v] for k, v in values.items() if k not in left_out])


def _records(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, limit: int = MAX_ROWS) -> Block:
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    shown = [[r.get(c) for c in columns] for r in rows[:limit]]
    return Block("table", headers=columns, rows=shown)


def _absent(step: str, how: str) -> Block:
    return Block("p", f"No {step} recorded in this bundle ({how}).")
