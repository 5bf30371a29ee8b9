"""Promotions: which version of a name is the champion, which one is on trial, and rollback.

The state and its log live in the release store (:mod:`kit.release`; SQLite beside the model store
by default, ``KIT_LOG_URL`` for a database that replicas share), changed atomically: concurrent
promotions and rollbacks from several processes or machines each apply to the state the previous
one left. The JSON-lines log of earlier kit versions (``$BENTOML_HOME/kit_promotions.jsonl``) is
imported into the store the first time the store is opened and left in place, unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kit._home import bentoml_home
from kit.package._store import _store_model
from kit.release._state import LEGACY_LOG, change, promote_change, read, rollback_change
from kit.release._state import history as _history

PROMOTIONS = LEGACY_LOG
"""The legacy JSON-lines log's file name (read once, for migration)."""


def promotions_path() -> Path:
    """The legacy JSON-lines promotion log beside the model store (imported into the release store)."""
    return bentoml_home() / PROMOTIONS


def history(name: str | None = None) -> list[dict[str, Any]]:
    """Promotion log entries, oldest first (optionally for one name)."""
    return _history(name)


def promoted(name: str) -> list[str]:
    """The champion stack of ``name``: promoted tags, the current champion last (rollbacks pop)."""
    return list(read(name).champions)


def promote(tag: str, reason: str, *, canary: float | None = None, shadow: bool = False) -> dict[str, Any]:
    """Make ``name:version`` the champion, or put it on trial beside the champion; records who, when and why.

    Args:
        tag: A stored version, ``name:version``.
        reason: Why (recorded in the promotion log).
        canary: Send this percentage of requests (0-100] to it; the champion answers the rest.
        shadow: Score every request with it in the background; the champion answers all of them.

    Returns:
        The log entry written (``event``: ``promote``, ``canary`` or ``shadow``; ``revision``).

    Raises:
        KitError: If the tag is not in the model store, or a trial is asked for with no champion yet.
    """
    model = _store_model(tag)
    return change(model.tag.name, promote_change(str(model.tag), reason, canary=canary, shadow=shadow))


def rollback(name: str, reason: str = "rollback") -> dict[str, Any]:
    """End the trial of ``name``'s challenger if one runs; else re-promote the champion before the current one.

    Returns:
        The log entry written (``tag`` is the champion now served, ``from`` the version taken off).

    Raises:
        KitError: If there is no challenger and fewer than two versions were promoted.
    """
    return change(name, rollback_change(reason))
