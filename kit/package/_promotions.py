"""Promotions: an append-only log of which version of a name is served, who promoted it, and rollback.

The log is JSON lines beside the store (``$BENTOML_HOME/kit_promotions.jsonl``): who promoted which
version, when and why. The served version of a name is the top of its promotion stack; a rollback
pops it and re-promotes the one before.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from kit.errors import KitError
from kit.package._store import _now, _store_model, _user, bentoml_home

PROMOTIONS = "kit_promotions.jsonl"


def promotions_path() -> Path:
    """The promotion log beside the model store."""
    return bentoml_home() / PROMOTIONS


def history(name: str | None = None) -> list[dict[str, Any]]:
    """Promotion log entries, oldest first (optionally for one name)."""
    path = promotions_path()
    if not path.is_file():
        return []
    entries: list[dict[str, Any]] = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise KitError(f"promotion log line {i + 1} is not JSON", file=str(path), row=i) from None
        if name is None or entry.get("name") == name:
            entries.append(entry)
    return entries


def promoted(name: str) -> list[str]:
    """The promotion stack of ``name``: promoted tags, the current one last (rollbacks pop)."""
    stack: list[str] = []
    for entry in history(name):
        if entry["event"] == "promote":
            if not stack or stack[-1] != entry["tag"]:
                stack.append(entry["tag"])
        elif entry["event"] == "rollback" and stack:
            stack.pop()
    return stack


def _append(entry: dict[str, Any]) -> None:
    import fcntl

    path = promotions_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def promote(tag: str, reason: str) -> dict[str, Any]:
    """Make ``name:version`` the served default of its name; records who, when and why.

    Returns:
        The log entry written.
    """
    model = _store_model(tag)
    full = str(model.tag)
    name = model.tag.name
    stack = promoted(name)
    entry = {"event": "promote", "name": name, "tag": full, "previous": stack[-1] if stack else None,
             "reason": reason, "by": _user(), "host": socket.gethostname(), "at": _now()}
    _append(entry)
    return entry


def rollback(name: str, reason: str = "rollback") -> dict[str, Any]:
    """Re-promote the version promoted before the current one of ``name``.

    Returns:
        The log entry written (``tag`` is the version now served).

    Raises:
        KitError: If fewer than two versions were promoted.
    """
    stack = promoted(name)
    if len(stack) < 2:
        raise KitError(f"nothing to roll back to: {name!r} has {len(stack)} promoted version(s)", field="name")
    entry = {"event": "rollback", "name": name, "tag": stack[-2], "from": stack[-1], "reason": reason,
             "by": _user(), "host": socket.gethostname(), "at": _now()}
    _append(entry)
    return entry
