"""Release state and the promotion log: promote, canary, shadow and rollback as atomic read-modify-writes.

Each change reads a name's state at some revision, computes the new state and log entry, and
writes both in one transaction that applies only if the state is still at that revision (an
``UPDATE ... WHERE revision = :read``; a new name is an ``INSERT`` guarded by its primary key).
A writer that lost the race reads again and recomputes, so two concurrent ``rollback`` calls on
``[A, B, C, D]`` log "C from D" and "B from C" and the state ends at B, on SQLite and PostgreSQL
alike. The log entry carries the revision it made, unique per name.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kit.errors import ConfigError, KitError, require
from kit.release._db import engine, store_url, tables, upsert

MODES = ("canary", "shadow")
MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class Release:
    """What is served under one model name.

    Attributes:
        name: The model name.
        champions: The promotion stack, the served champion last (a rollback pops it).
        challenger: The version on trial, or ``None``.
        mode: ``canary`` (it answers ``percent`` % of requests) or ``shadow`` (it scores every
            request in the background; the champion answers), or ``None``.
        percent: The canary's share of requests, in percent (0 unless ``mode`` is ``canary``).
        retired: Challengers that were rolled back (an env-pinned ``KIT_CHALLENGER_TAG`` in this
            list stays off until it is promoted again).
        revision: Incremented by every change; ``0`` for a name never promoted.
    """

    name: str
    champions: tuple[str, ...] = ()
    challenger: str | None = None
    mode: str | None = None
    percent: float = 0.0
    retired: tuple[str, ...] = ()
    revision: int = 0
    updated: float = field(default=0.0, compare=False)

    @property
    def champion(self) -> str | None:
        """The served champion tag, or ``None`` before the first promotion."""
        return self.champions[-1] if self.champions else None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``/release``, ``kit release status``)."""
        return {"name": self.name, "champion": self.champion, "champions": list(self.champions),
                "challenger": self.challenger, "mode": self.mode, "percent": self.percent,
                "retired": list(self.retired), "revision": self.revision}


def _row_to_release(row: Any) -> Release:
    return Release(name=row.name, champions=tuple(json.loads(row.champions)), challenger=row.challenger,
                   mode=row.mode, percent=float(row.percent), retired=tuple(json.loads(row.retired)),
                   revision=int(row.revision), updated=float(row.updated))


def read(name: str, url: str | None = None) -> Release:
    """The current release state of ``name`` (revision 0 when it was never promoted)."""
    sa = require("sqlalchemy", "serve")
    t = tables()
    with _engine(url).connect() as conn:
        row = conn.execute(sa.select(t.release).where(t.release.c.name == name)).first()
    return _row_to_release(row) if row is not None else Release(name=name)


def names(url: str | None = None) -> list[str]:
    """Every name with a release state, the most recently changed last."""
    sa = require("sqlalchemy", "serve")
    t = tables()
    with _engine(url).connect() as conn:
        rows = conn.execute(sa.select(t.release.c.name).order_by(t.release.c.updated, t.release.c.name)).all()
    return [r.name for r in rows]


def history(name: str | None = None, url: str | None = None) -> list[dict[str, Any]]:
    """Promotion log entries, oldest first (optionally for one name)."""
    sa = require("sqlalchemy", "serve")
    t = tables()
    query = sa.select(t.promotions.c.entry).order_by(t.promotions.c.seq)
    if name is not None:
        query = query.where(t.promotions.c.name == name)
    with _engine(url).connect() as conn:
        return [json.loads(r.entry) for r in conn.execute(query)]


Change = Callable[[Release], tuple[Release, dict[str, Any]]]
"""A pure function from the state read to the new state and its log entry (may raise KitError)."""


def change(name: str, fn: Change, url: str | None = None, *, by: str | None = None) -> dict[str, Any]:
    """Apply ``fn`` to ``name``'s state atomically and log it; returns the log entry written.

    Retries (re-reading the state) when another writer changed it first, up to
    :data:`MAX_ATTEMPTS` times with a short random back-off.
    """
    sa = require("sqlalchemy", "serve")
    from kit.package._store import _now, _user

    t = tables()
    eng = _engine(url)
    for attempt in range(MAX_ATTEMPTS):
        current = read(name, url)
        new, entry = fn(current)
        new = replace(new, revision=current.revision + 1, updated=time.time())
        entry = {**entry, "name": name, "revision": new.revision, "by": by or _user(),
                 "host": socket.gethostname(), "at": _now()}
        values = {"revision": new.revision, "champions": json.dumps(list(new.champions)),
                  "challenger": new.challenger, "mode": new.mode, "percent": new.percent,
                  "retired": json.dumps(list(new.retired)), "updated": new.updated}
        try:
            with eng.begin() as conn:
                if current.revision == 0:
                    conn.execute(sa.insert(t.release).values(name=name, **values))
                else:
                    done = conn.execute(sa.update(t.release).where(
                        t.release.c.name == name, t.release.c.revision == current.revision).values(**values))
                    if done.rowcount != 1:
                        raise _Lost
                conn.execute(sa.insert(t.promotions).values(name=name, revision=new.revision, event=entry["event"],
                                                            entry=json.dumps(entry, sort_keys=True)))
        except (_Lost, sa.exc.IntegrityError):
            pass
        except sa.exc.OperationalError as exc:  # SQLite: "database is locked" after the busy timeout
            if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                raise
        else:
            return entry
        time.sleep(random.uniform(0.001, 0.005 * min(attempt + 1, 20)))
    raise KitError(f"could not update the release state of {name!r}: {MAX_ATTEMPTS} concurrent writers won "
                   "first; try again", field="name")


class _Lost(Exception):
    """Another writer changed the state since it was read."""


def check_percent(percent: float | str) -> float:
    """A canary share in (0, 100], or a ConfigError naming ``canary``."""
    try:
        value = float(percent)
    except (TypeError, ValueError):
        raise ConfigError(f"canary must be a percentage, but got {percent!r}", field="canary") from None
    if not 0 < value <= 100:
        raise ConfigError(f"canary must be in (0, 100] percent of requests, but got {value:g}", field="canary")
    return value


def promote_change(tag: str, reason: str, *, canary: float | None = None, shadow: bool = False) -> Change:
    """The change ``promote`` makes: champion, or challenger in canary or shadow mode."""
    if canary is not None and shadow:
        raise ConfigError("choose canary or shadow, not both", field="shadow")
    percent = check_percent(canary) if canary is not None else None

    def apply(s: Release) -> tuple[Release, dict[str, Any]]:
        retired = tuple(t for t in s.retired if t != tag)
        if percent is None and not shadow:
            champions = s.champions if s.champion == tag else (*s.champions, tag)
            keep = s.challenger if s.challenger != tag else None
            new = replace(s, champions=champions, challenger=keep, mode=s.mode if keep else None,
                          percent=s.percent if keep else 0.0, retired=retired)
            return new, {"event": "promote", "tag": tag, "previous": s.champion, "reason": reason,
                         "ended": s.challenger if s.challenger == tag else None}
        if s.champion is None:
            raise KitError(f"{s.name!r} has no champion yet: promote a version first (kit promote {tag}), then "
                           "put another one on trial", field="tag")
        if s.champion == tag:
            raise KitError(f"{tag} is already the champion; a challenger must be another version", field="tag")
        mode = "shadow" if shadow else "canary"
        new = replace(s, challenger=tag, mode=mode, percent=percent or 0.0, retired=retired)
        return new, {"event": mode, "tag": tag, "champion": s.champion, "percent": percent,
                     "previous": s.challenger, "reason": reason}

    return apply


def rollback_change(reason: str, *, auto: bool = False, expect: str | None = None) -> Change:
    """The change ``rollback`` makes: end the trial if one runs, else re-promote the previous champion.

    Args:
        reason: Why (recorded).
        auto: Recorded as an automatic rollback.
        expect: Only roll back this challenger (automatic rollbacks: a trial that ended meanwhile is left alone).
    """
    def apply(s: Release) -> tuple[Release, dict[str, Any]]:
        if expect is not None and s.challenger != expect:
            raise _Stale(f"{expect} is no longer on trial")
        if s.challenger is not None:
            new = replace(s, challenger=None, mode=None, percent=0.0,
                          retired=(*[t for t in s.retired if t != s.challenger], s.challenger))
            return new, {"event": "rollback", "what": "challenger", "tag": s.champion, "from": s.challenger,
                         "mode": s.mode, "reason": reason, "auto": auto}
        if len(s.champions) < 2:
            raise KitError(f"nothing to roll back to: {s.name!r} has {len(s.champions)} promoted version(s) and no "
                           "challenger", field="name")
        new = replace(s, champions=s.champions[:-1])
        return new, {"event": "rollback", "what": "champion", "tag": s.champions[-2], "from": s.champions[-1],
                     "reason": reason, "auto": auto}

    return apply


class _Stale(KitError):
    """The state no longer holds what an automatic change expected."""


def replay(entries: list[dict[str, Any]]) -> dict[str, Release]:
    """Release states from legacy log entries (``promote``/``rollback`` of the JSON-lines log), per name."""
    states: dict[str, Release] = {}
    for e in entries:
        name = e.get("name")
        if not isinstance(name, str):
            continue
        s = states.get(name, Release(name=name))
        if e.get("event") == "promote" and isinstance(e.get("tag"), str):
            s = promote_change(e["tag"], "")(s)[0]
        elif e.get("event") == "rollback" and len(s.champions) > 1:
            s = replace(s, champions=s.champions[:-1])
        states[name] = s
    return states


LEGACY_LOG = "kit_promotions.jsonl"
"""The JSON-lines promotion log of earlier kit versions, in ``$BENTOML_HOME`` (imported once per store)."""

_IMPORTED: set[tuple[str, str]] = set()


def _engine(url: str | None) -> Any:
    """The store's engine, after importing the legacy JSON-lines log into it (once per store and file)."""
    from kit._home import bentoml_home

    full = store_url(url)
    eng = engine(full)
    legacy = bentoml_home() / LEGACY_LOG
    key = (full, str(legacy))
    if key not in _IMPORTED:
        if legacy.is_file():
            import_jsonl(legacy, full)
        _IMPORTED.add(key)
    return eng


def read_jsonl(path: str | Any) -> list[dict[str, Any]]:
    """The entries of a JSON-lines promotion log, oldest first.

    Raises:
        KitError: Naming the file and line of a line that is not a JSON object.
    """
    from pathlib import Path

    entries: list[dict[str, Any]] = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            raise KitError(f"promotion log line {i + 1} is not a JSON object", file=str(path), row=i)
        entries.append(entry)
    return entries


def import_jsonl(path: str | Any, url: str | None = None) -> int:
    """Import a JSON-lines promotion log into the store once; returns the entries imported (0 if done before).

    The file is left in place, unchanged. Names that already have a state in the store keep it;
    the file's entries for them are not imported (they predate the store).
    """
    from pathlib import Path

    sa = require("sqlalchemy", "serve")
    t = tables()
    path = Path(path).resolve()
    entries = read_jsonl(path)
    states = replay(entries)
    try:
        with engine(store_url(url)).begin() as conn:
            conn.execute(sa.insert(t.meta).values(key=f"imported:{path}", value=json.dumps(
                {"entries": len(entries), "at": time.time()})))
            present = {r.name for r in conn.execute(sa.select(t.release.c.name))}
            count = 0
            for name, state in states.items():
                if name in present:
                    continue
                mine = [e for e in entries if e.get("name") == name]
                for revision, e in enumerate(mine, start=1):
                    conn.execute(sa.insert(t.promotions).values(
                        name=name, revision=revision, event=str(e.get("event")),
                        entry=json.dumps({**e, "revision": revision, "imported_from": str(path)}, sort_keys=True)))
                upsert(conn, t.release, [{
                    "name": name, "revision": len(mine), "champions": json.dumps(list(state.champions)),
                    "challenger": None, "mode": None, "percent": 0.0, "retired": "[]", "updated": time.time()}],
                    ["name"], ["revision", "champions", "challenger", "mode", "percent", "retired", "updated"])
                count += len(mine)
    except sa.exc.IntegrityError:  # imported before (or by a concurrent process right now)
        return 0
    return count
