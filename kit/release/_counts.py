"""Prediction counts kept as predictions arrive, so a window's counts never rescan the log.

The log's writer adds, in the transaction that inserts a batch, its predictions and errors per model
name, version, route and :data:`BUCKET_S`-second bucket of ``at`` to ``kit_prediction_counts``;
pruning takes away what it deletes, in its own transaction. A window's counts (:func:`window`) are
then the sum of the buckets it covers whole, plus an exact count of the logged predictions in the two
buckets its ends cut through (the blocks of at most ``2 * BUCKET_S`` seconds, through the
``(name, at_last)`` index): the same numbers as counting the window's rows, at a cost that no longer grows with the
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


def since(conn: Any) -> float:
    """When the store's counts began (``inf`` if no log opened it yet: nothing is counted)."""
    found = _since(conn)
    return float("inf") if found is None else found


def _since(conn: Any) -> float | None:
    sa = require("sqlalchemy", "serve")
    meta = tables().meta
    value = conn.execute(sa.select(meta.c.value).where(meta.c.key == MARKER)).scalar()
    return None if value is None else float(json.loads(value))


def tally(rows: list[tuple[Any, ...]], since: float) -> dict[tuple[str, int, str, str], list[int]]:
    """Predictions and errors per (name, bucket, tag, route) of log rows in :data:`kit.release._blocks.COLUMNS` order.

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


def tally_blocks(heads: Any, since: float) -> dict[tuple[str, int, str, str], list[int]]:
    """:func:`tally` of whole blocks, from their ``route``, ``name``, ``tag``, ``ats`` and ``messages`` columns."""
    from kit.release._blocks import decode

    out: dict[tuple[str, int, str, str], list[int]] = {}
    for h in heads:
        d = decode(h, ("ats", "messages"))
        for at, error in zip(d["ats"], d["messages"], strict=True):
            if at < since:
                continue
            c = out.setdefault((h.name, int(at // BUCKET_S), h.tag, h.route), [0, 0])
            c[0] += 1
            c[1] += error is not None
    return out


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
    b, c = t.blocks, t.counts
    out: Counts = {}

    def scan(lo: float, hi: float, closed: bool) -> None:  # from the log: predictions in [lo, hi] or [lo, hi)
        from kit.release._blocks import decode, overlapping

        q = sa.select(b.c.tag, b.c.route, b.c.n, b.c.errors, b.c.at, b.c.at_last, b.c.ats, b.c.messages)
        for h in conn.execute(q.where(*overlapping(name, lo, hi))):
            agg = out.setdefault((h.tag, h.route), [0, 0])
            if h.at >= lo and (h.at_last <= hi if closed else h.at_last < hi):  # the whole block
                agg[0] += h.n
                agg[1] += h.errors
                continue
            d = decode(h, ("ats", "messages"))
            for at, error in zip(d["ats"], d["messages"], strict=True):
                if lo <= at and (at <= hi if closed else at < hi):
                    agg[0] += 1
                    agg[1] += error is not None
        for key in [k for k, v in out.items() if not v[0]]:
            del out[key]

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
