"""How the prediction log is stored: blocks of up to :data:`BLOCK_ROWS` predictions, each column a JSON array.

A row per prediction cost the writer 12-17 microseconds of a serving worker's CPU per prediction on
this project's 2-core machine (binding ten parameters, three B-trees, a ~1 KB row), more than the
10 % of kit's own per-request cost that the whole release may take. So the writer stores the
predictions of one model name, version and route that arrive together as one row of
``kit_prediction_blocks``: its columns ``ids``, ``ats``, ``inputs``, ``outputs``, ``predictions``,
``latency_ms`` and ``messages`` (the errors; ``NULL`` when none failed) are JSON arrays with one
item per prediction, in prediction-id order, built by joining the texts the requests queued (the
rows' JSON as the clients sent it, the outputs' JSON, one output a line so that a label's output
is decoded alone). A block also records its id range
(``first_id``, ``last_id``), its time range (``at``, ``at_last``) and its counts (``n``, ``errors``).

Finding a prediction by id. Ids are a per-process prefix and a counter (:class:`kit.release._log.Ids`)
and a worker's writer stores each route's predictions in id order, so one process's blocks of one
route never overlap and a worker's ids sort together: the block holding an id is the block of that
route with the largest ``first_id`` not above it, one index seek (:func:`locate`; shadow scores that
finish out of order can make shadow blocks overlap, and the few ids missed that way are looked up in
the nearest blocks below). :func:`rows` reads the log back as one record per prediction (also
``kit.release.predictions``); in SQL, SQLite's ``json_each`` and PostgreSQL's ``json_array_elements``
unnest a block.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from kit.errors import require
from kit.release._db import engine, store_url, tables

BLOCK_ROWS = 256
"""Most predictions in one block (a label's lookup decodes at most this many ids and outputs)."""

COLUMNS = ("prediction_id", "route", "at", "name", "tag", "inputs", "output", "prediction", "latency_ms", "error")
"""One prediction as the writer hands it over (``inputs`` and ``output``: JSON text) and :func:`rows` returns it."""

ARRAYS = ("ids", "ats", "inputs", "outputs", "predictions", "latency_ms", "messages")
"""A block's per-prediction columns (JSON arrays)."""

ROUTES = ("champion", "canary", "shadow")
"""How a prediction was made: by the champion, by the challenger answering a canary share, or by the
challenger in the background (shadow; the client got the champion's answer under the same id)."""

SPAN_S = 10.0
"""Most seconds between a block's first and last prediction (a time range's blocks are found by ``at_last``
within ``SPAN_S`` of it: :func:`overlapping`)."""

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the serve extra installs it
    _orjson = None  # type: ignore[assignment]


def _dumps(value: Any) -> str:
    """JSON text of the log's own values (ids, times, predictions, latencies, errors)."""
    if _orjson is not None:
        return _orjson.dumps(value).decode()
    return json.dumps(value)


def loads(text: str | bytes) -> Any:
    """JSON of request bodies, the log's arrays and labels: orjson if installed (several times faster), else json."""
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:  # what orjson refuses (integers beyond 64 bits) the stdlib reads
            pass
    return json.loads(text)


def groups(rows: Sequence[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """Predictions in :data:`COLUMNS` order, split into blocks' worth.

    One block per (name, version, route), in id order, at most :data:`BLOCK_ROWS` predictions and
    :data:`SPAN_S` seconds apart.
    """
    by_key: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
    for r in rows:
        key = (r[3], r[4], r[1])
        group = by_key.get(key)
        if group is None:
            by_key[key] = [r]
        else:
            group.append(r)
    out: list[list[tuple[Any, ...]]] = []
    for group in by_key.values():
        if any(group[i][0] > group[i + 1][0] for i in range(len(group) - 1)):  # shadow scores finish in any order
            group.sort(key=itemgetter(0))
        for start in range(0, len(group), BLOCK_ROWS):
            part = group[start:start + BLOCK_ROWS]
            ats = [r[2] for r in part]
            if max(ats) - min(ats) <= SPAN_S:
                out.append(part)
                continue
            lo = hi = ats[0]  # a writer that fell behind: cut where a prediction is too far from the block's
            block: list[tuple[Any, ...]] = []
            for r in part:
                at = r[2]
                if block and (at > lo + SPAN_S or at < hi - SPAN_S):
                    out.append(block)
                    block, lo, hi = [], at, at
                block.append(r)
                lo, hi = min(lo, at), max(hi, at)
            out.append(block)
    return out


def encode(rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The blocks (:func:`groups`) of predictions in :data:`COLUMNS` order (``inputs``, ``output``: JSON text)."""
    return [block(part) for part in groups(rows)]


def block(part: list[tuple[Any, ...]], body_row: Callable[[bytes], bytes] | None = None) -> dict[str, Any]:
    """One block's row from one of :func:`groups`'s parts.

    Each prediction's ``inputs`` is its row's JSON text, or, with ``body_row``, also the bytes
    ``body_row`` takes that JSON from (the request body of a one-row request: the prediction log's
    writer takes the row out of it here, with one join and one decode for the whole block). Its
    ``output`` is JSON text or UTF-8 bytes (taken from the encoded answer).
    """
    ids, routes, ats, names, tags, inputs, outputs, predictions, latency, errors = zip(*part, strict=True)
    failed = len(errors) - errors.count(None)
    if body_row is None:
        text = "[" + ",".join(inputs) + "]"
    else:
        text = (b"[" + b",".join([body_row(x) if type(x) is bytes else x.encode() for x in inputs]) + b"]").decode()
    return {"route": routes[0], "first_id": ids[0], "last_id": ids[-1], "name": names[0], "tag": tags[0],
            "at": min(ats), "at_last": max(ats), "n": len(part), "errors": failed, "ids": _dumps(ids),
            "ats": _dumps(ats), "inputs": text,
            "outputs": "[\n" + ",\n".join(["null" if o is None else o if type(o) is str else o.decode()
                                           for o in outputs]) + "\n]",
            "predictions": _dumps(predictions), "latency_ms": _dumps(latency),
            "messages": _dumps(errors) if failed else None}


_FIELDS = ("route", "first_id", "last_id", "name", "tag", "at", "at_last", "n", "errors", *ARRAYS)
_SQLITE_INSERT = (f"INSERT INTO kit_prediction_blocks ({', '.join(_FIELDS)}) "
                  f"VALUES ({', '.join('?' * len(_FIELDS))})")


def insert(conn: Any, blocks: list[dict[str, Any]]) -> None:
    """Insert blocks in the caller's transaction (SQLite through the driver's ``executemany``)."""
    if not blocks:
        return
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_SQLITE_INSERT, [tuple([b[f] for f in _FIELDS]) for b in blocks])
        return
    sa = require("sqlalchemy", "serve")
    conn.execute(sa.insert(tables().blocks), blocks)


def _mapping(block: Any) -> Mapping[str, Any]:
    """A block's columns by name, from a result row or a mapping."""
    return block if isinstance(block, Mapping) else block._mapping


def decode(block: Any, fields: Iterable[str] = ARRAYS) -> dict[str, list[Any]]:
    """A block's arrays (from a row or mapping), decoded; ``messages`` is ``None`` per row when none failed."""
    m = _mapping(block)
    out: dict[str, list[Any]] = {}
    for f in fields:
        value = m[f]
        out[f] = [None] * int(m["n"]) if value is None else loads(value)
    return out


def to_rows(block: Any) -> list[tuple[Any, ...]]:
    """A block as predictions in :data:`COLUMNS` order (inputs and output decoded)."""
    m = _mapping(block)
    d = decode(m)
    route, name, tag = m["route"], m["name"], m["tag"]
    return [(pid, route, at, name, tag, x, o, p, lat, e) for pid, at, x, o, p, lat, e in zip(
        d["ids"], d["ats"], d["inputs"], d["outputs"], d["predictions"], d["latency_ms"], d["messages"], strict=True)]


def rewrite(conn: Any, block: Any, keep: list[bool]) -> None:
    """Keep only the predictions of a block marked in ``keep`` (the block is deleted when none are left)."""
    sa = require("sqlalchemy", "serve")
    b = tables().blocks
    m = _mapping(block)
    conn.execute(sa.delete(b).where(b.c.route == m["route"], b.c.first_id == m["first_id"]))
    kept = [r for r, k in zip(to_rows(m), keep, strict=True) if k]
    if kept:
        insert(conn, encode([(*r[:5], _dumps(r[5]), None if r[6] is None else _dumps(r[6]), *r[7:]) for r in kept]))


class _Lines:
    """A block's ``outputs`` array (one element a line), decoding only the elements asked for."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")

    def __getitem__(self, i: int) -> Any:
        return loads(self.lines[i + 1].rstrip(","))


def locate(conn: Any, ids: Sequence[str] | None = None, *, fields: Sequence[str] = ("ids",),
           where: Sequence[Any] = ()) -> dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]]:
    """Where the labelled ids (``ids``, else every id in ``kit_feedback``) were logged, with their labels.

    Args:
        conn: A connection to the store.
        ids: The ids to look up (they must be in ``kit_feedback``); ``None``: every labelled id.
        fields: The block arrays to decode for each prediction found (``ids`` always).
        where: Conditions on the blocks (e.g. model name, time range); blocks failing them are not read.

    Returns:
        id -> one ``(label, block, values)`` per route that logged it: ``block`` the block's row
        (without its arrays), ``values`` that prediction's ``fields`` (and ``index``, its place in
        the block).
    """
    sa = require("sqlalchemy", "serve")
    t = tables()
    f, b = t.feedback, t.blocks
    nearest = []
    for route in ROUTES:  # per route, the block with the largest first_id not above the id: one index seek
        bb = b.alias(f"b_{route}")
        nearest.append(sa.select(bb.c.first_id).where(bb.c.route == route, bb.c.first_id <= f.c.prediction_id)
                       .order_by(bb.c.first_id.desc()).limit(1).scalar_subquery())
    q = sa.select(f.c.prediction_id, f.c.label, *nearest)
    found: list[tuple[str, str, str, str]] = []  # (id, label, route, first_id)
    for chunk in ([None] if ids is None else [list(ids[i:i + 500]) for i in range(0, len(ids), 500)]):
        stmt = q if chunk is None else q.where(f.c.prediction_id.in_(chunk))
        for pid, label, *firsts in conn.execute(stmt):
            found.extend((pid, label, route, first) for route, first in zip(ROUTES, firsts, strict=True) if first)
    cache: dict[tuple[str, str], tuple[Any, dict[str, list[Any]]] | None] = {}
    columns = [b.c[c] for c in ("route", "first_id", "last_id", "name", "tag", "at", "at_last", "n", "errors",
                                *dict.fromkeys(("ids", *fields)))]

    def load(keys: set[tuple[str, str]]) -> None:
        for route in ROUTES:
            firsts = sorted(k[1] for k in keys if k[0] == route and k not in cache)
            for i in range(0, len(firsts), 500):
                for k in firsts[i:i + 500]:
                    cache[(route, k)] = None
                stmt = sa.select(*columns).where(b.c.route == route, b.c.first_id.in_(firsts[i:i + 500]), *where)
                for row in conn.execute(stmt):
                    m = row._mapping
                    arrays: dict[str, Any] = decode(m, [f for f in ("ids", *fields) if f != "outputs"])
                    if "outputs" in fields:  # one output a line: only the labelled ones are decoded
                        arrays["outputs"] = _Lines(m["outputs"])
                    cache[(route, row.first_id)] = (m, arrays)

    def member(key: tuple[str, str], pid: str) -> tuple[Any, dict[str, Any]] | None:
        hit = cache.get(key)
        if hit is None:
            return None
        ids_ = hit[1]["ids"]
        i = bisect.bisect_left(ids_, pid)
        if i < len(ids_) and ids_[i] == pid:
            return hit[0], {"index": i, **{k: v[i] for k, v in hit[1].items()}}
        return None

    load({(route, first) for _, _, route, first in found})
    out: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
    missed: list[tuple[str, str, str, str]] = []
    for pid, label, route, first in found:
        hit = member((route, first), pid)
        if hit is not None:
            out.setdefault(pid, []).append((label, *hit))
        elif route == "shadow" and cache.get((route, first)) is not None:
            missed.append((pid, label, route, first))
        # else: not logged on this route (a champion or canary block holds every id of its range that
        # the route logged), or its block is outside ``where`` (older blocks, where it could be, too)
    for pid, label, route, _ in missed:  # overlapping shadow blocks: the nearest blocks below
        stmt = (sa.select(b.c.first_id).where(b.c.route == route, b.c.first_id <= pid, b.c.last_id >= pid)
                .order_by(b.c.first_id.desc()).limit(4))
        for first in conn.execute(stmt).scalars():
            load({(route, first)})
            hit = member((route, first), pid)
            if hit is not None:
                out.setdefault(pid, []).append((label, *hit))
                break
    return out


def overlapping(name: str, lo: float, hi: float) -> list[Any]:
    """Conditions on the blocks of ``name`` that may hold predictions made in ``[lo, hi]`` (a range of ``at_last``)."""
    b = tables().blocks
    return [b.c.name == name, b.c.at_last >= lo, b.c.at_last <= hi + SPAN_S, b.c.at <= hi]


def rows(name: str | None = None, url: str | None = None, *, since: float | None = None,
         until: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The logged predictions, newest first, one record per prediction (``inputs`` and ``output`` decoded).

    Args:
        name: Only this model name (default: every name).
        url: The release store (default ``KIT_LOG_URL``, else SQLite in ``$BENTOML_HOME``).
        since: Only predictions made at or after this time (seconds since the epoch).
        until: Only those made at or before this time.
        limit: At most this many.

    Returns:
        Records with the keys of :data:`COLUMNS`.
    """
    sa = require("sqlalchemy", "serve")
    b = tables().blocks
    where = []
    if name is not None:
        where.append(b.c.name == name)
    if since is not None:
        where.append(b.c.at_last >= since)
    if until is not None:
        where += [b.c.at <= until, b.c.at_last <= until + SPAN_S]
    stmt = sa.select(b).where(*where).order_by(b.c.at_last.desc())
    with engine(store_url(url)).connect() as conn:
        found = newest(conn, stmt, ARRAYS, limit, since, until)
    return [{"prediction_id": d["ids"][i], "route": m["route"], "at": d["ats"][i], "name": m["name"], "tag": m["tag"],
             "inputs": d["inputs"][i], "output": d["outputs"][i], "prediction": d["predictions"][i],
             "latency_ms": d["latency_ms"][i], "error": d["messages"][i]} for m, d, i in found]


_NEWEST = itemgetter(0, 1)  # (at, prediction id): newest first, ties by id


def newest(conn: Any, stmt: Any, fields: Sequence[str], limit: int | None = None, since: float | None = None,
           until: float | None = None) -> list[tuple[Mapping[str, Any], dict[str, list[Any]], int]]:
    """The predictions made in ``[since, until]`` in the blocks ``stmt`` selects, newest first, at most ``limit``.

    ``stmt`` must select the blocks latest ``at_last`` first, with their ``n``, ``at_last``, ``ids``,
    ``ats`` and ``fields``: reading stops at the first block that cannot hold one of the ``limit``
    newest. Each prediction comes as ``(block, arrays, index)``: the block's columns, its decoded
    ``ids``, ``ats`` and ``fields``, and the prediction's place in them.
    """
    found: list[tuple[float, str, Mapping[str, Any], dict[str, list[Any]], int]] = []

    def trim() -> None:
        found.sort(key=_NEWEST, reverse=True)
        if limit is not None:
            del found[limit:]

    for block in conn.execute(stmt):
        if limit is not None and len(found) >= limit:
            trim()
            if block.at_last < found[-1][0]:
                break
        m = _mapping(block)
        d = decode(m, dict.fromkeys(("ids", "ats", *fields)))
        for i, (pid, at) in enumerate(zip(d["ids"], d["ats"], strict=True)):
            if (since is None or at >= since) and (until is None or at <= until):
                found.append((at, pid, m, d, i))
    trim()
    return [(m, d, i) for _, _, m, d, i in found]
