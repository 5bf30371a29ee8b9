"""Prediction counts kept as predictions arrive, so a window's counts never rescan the log.

The log's writer adds, in the transaction that inserts a batch, its predictions and errors per model
name, version, route and :data:`BUCKET_S`-second bucket of ``at`` to ``kit_prediction_counts``;
pruning takes away what it deletes, in its own transaction. A window's counts (:func:`window`) are
then the sum of the buckets it covers whole, plus an exact count of the log rows in the two buckets
its ends cut through (at most ``2 * BUCKET_S`` seconds of predictions, through the ``(name, at)``
index): the same numbers as counting the window's rows, at a cost that no longer grows with the
window. Before, every ``/performance``, ``kit release status`` and live-metrics refresh counted every
prediction of the window (0.2 s at 200,000 predictions here).

The counts are complete from the moment the first log opened the store with this table (``counts:since``
in ``kit_meta``, recorded once per store): older rows, written by an earlier kit, are counted from
the log itself. Every server sharing a store must run a kit that keeps the counts; rows written by
an earlier one meanwhile would be missing from them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kit.errors import require
from kit.release._db import engine, tables

BUCKET_S = 10.0
"""Width of a count bucket, in seconds of ``at``: a row belongs to bucket ``floor(at / BUCKET_S)``."""

MARKER = "counts:since"
"""The ``kit_meta`` key holding the time from which the counts table is complete."""

Counts = dict[tuple[str, str], list[int]]
"""(version tag, route) -> [predictions, errors]."""

def bucket(at: float) -> int:
    """The bucket of a prediction made at ``at`` (exactly ``floor(at / BUCKET_S)``: ``//`` of floats is exact)."""
    return int(at // BUCKET_S)


def ensure(url: str) -> float:
    """When the store's counts became complete, recorded now if no log opened the store before (writers call it)."""
    sa = require("sqlalchemy", "serve")
    meta = tables().meta
    with engine(url).connect() as conn:
        found = _since(conn)
    if found is None:
        try:
            with engine(url).begin() as conn:
                conn.execute(sa.insert(meta).values(key=MARKER, value=json.dumps(time.time())))
        except sa.exc.IntegrityError:  # another process recorded it first
            pass
        with engine(url).connect() as conn:
            found = _since(conn)
    assert found is not None
    return found


def _since(conn: Any) -> float | None:
    sa = require("sqlalchemy", "serve")
    meta = tables().meta
    value = conn.execute(sa.select(meta.c.value).where(meta.c.key == MARKER)).scalar()
    return None if value is None else float(json.loads(value))


def tally(rows: list[tuple[Any, ...]], since: float) -> dict[tuple[str, int, str, str], list[int]]:
    """Predictions and errors per (name, bucket, tag, route) of log rows in :data:`kit.release._log.COLUMNS` order.

    Rows made before ``since`` (counted from the log itself) are left out.
    """
    out: dict[tuple[str, int, str, str], list[int]] = {}
    for r in rows:
        at = r[2]
        if at < since:
            continue
        key = (r[3], int(at // BUCKET_S), r[4], r[1])
        c = out.get(key)
        if c is None:
            out[key] = [1, int(r[9] is not None)]
        else:
            c[0] += 1
            c[1] += r[9] is not None
    return out


def add(conn: Any, counts: dict[tuple[str, int, str, str], list[int]]) -> None:
    """Add :func:`tally`'s counts to the table, in the caller's transaction."""
    if not counts:
        return
    sa = require("sqlalchemy", "serve")
    t = tables().counts
    values = [{"name": k[0], "bucket": k[1], "tag": k[2], "route": k[3], "n": n, "errors": e}
              for k, (n, e) in counts.items()]
    upsert = _upsert(conn.dialect.name)
    if upsert is not None:
        conn.execute(upsert, values)
        return
    for v in values:  # other databases: update, else insert
        key = [t.c.name == v["name"], t.c.bucket == v["bucket"], t.c.tag == v["tag"], t.c.route == v["route"]]
        if not conn.execute(sa.update(t).where(*key).values(n=t.c.n + v["n"], errors=t.c.errors + v["errors"])
                            ).rowcount:
            conn.execute(sa.insert(t).values(**v))


_UPSERTS: dict[str, Any] = {}


def _upsert(dialect: str) -> Any:
    """The dialect's ``INSERT ... ON CONFLICT DO UPDATE`` adding to the counts (built once: a batch reuses it)."""
    if dialect not in ("postgresql", "sqlite"):
        return None
    if dialect not in _UPSERTS:
        import importlib

        t = tables().counts
        stmt = importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert(t)
        _UPSERTS[dialect] = stmt.on_conflict_do_update(
            index_elements=["name", "bucket", "tag", "route"],
            set_={"n": t.c.n + stmt.excluded.n, "errors": t.c.errors + stmt.excluded.errors})
    return _UPSERTS[dialect]


def subtract(conn: Any, counts: dict[tuple[str, int, str, str], list[int]]) -> None:
    """Take deleted predictions out of the table (buckets left empty are deleted), in the caller's transaction."""
    if not counts:
        return
    sa = require("sqlalchemy", "serve")
    t = tables().counts
    for (name, b, tag, route), (n, e) in counts.items():
        key = [t.c.name == name, t.c.bucket == b, t.c.tag == tag, t.c.route == route]
        conn.execute(sa.update(t).where(*key).values(n=t.c.n - n, errors=t.c.errors - e))
        conn.execute(sa.delete(t).where(*key, t.c.n <= 0))


def deleted(conn: Any, where: list[Any]) -> dict[tuple[str, int, str, str], list[int]]:
    """:func:`tally` of the log rows matching ``where`` (read before the caller deletes them)."""
    sa = require("sqlalchemy", "serve")
    p = tables().predictions
    since = _since(conn)
    if since is None:
        return {}
    rows = conn.execute(sa.select(p.c.route, p.c.at, p.c.name, p.c.tag, p.c.error.is_not(None)).where(*where))
    return tally([(None, route, at, name, tag, None, None, None, None, True if err else None)
                  for route, at, name, tag, err in rows], since)


def drop_before(conn: Any, cutoff: float) -> float:
    """Delete the buckets wholly before ``cutoff``; returns where they end (the log's rows before it go too)."""
    sa = require("sqlalchemy", "serve")
    t = tables().counts
    first = bucket(cutoff)
    conn.execute(sa.delete(t).where(t.c.bucket < first))
    return first * BUCKET_S


def window(conn: Any, name: str, since: float, until: float) -> Counts:
    """Predictions and errors of ``name`` made in ``[since, until]``, per (version tag, route), exactly."""
    sa = require("sqlalchemy", "serve")
    t = tables()
    p, c = t.predictions, t.counts
    out: Counts = {}

    def scan(lo: float, hi: float, closed: bool) -> None:  # from the log: rows in [lo, hi] or [lo, hi)
        errors = sa.func.sum(sa.case((p.c.error.is_not(None), 1), else_=0))
        q = (sa.select(p.c.tag, p.c.route, sa.func.count(), errors)
             .where(p.c.name == name, p.c.at >= lo, p.c.at <= hi if closed else p.c.at < hi)
             .group_by(p.c.tag, p.c.route))
        _merge(out, conn.execute(q))

    start = _since(conn)
    if start is None or since < start:  # rows from before the counts began
        if start is None or until < start:
            scan(since, until, True)
        else:
            scan(since, start, False)
    if start is None or until < max(since, start):
        return out
    lo = max(since, start)
    first, last = bucket(lo), bucket(until)
    if first == last:
        scan(lo, until, True)
        return out
    scan(lo, (first + 1) * BUCKET_S, False)
    if last - first > 1:
        q = (sa.select(c.c.tag, c.c.route, sa.func.sum(c.c.n), sa.func.sum(c.c.errors))
             .where(c.c.name == name, c.c.bucket > first, c.c.bucket < last).group_by(c.c.tag, c.c.route))
        _merge(out, conn.execute(q))
    scan(last * BUCKET_S, until, True)
    return out


def _merge(out: Counts, rows: Any) -> None:
    for tag, route, n, errors in rows:
        if not n:
            continue
        agg = out.setdefault((tag, route), [0, 0])
        agg[0] += int(n)
        agg[1] += int(errors or 0)
