"""The prediction log: every prediction (id, time, version, route, inputs, output) written in the background.

A request appends to the writer's queue one tuple of text and numbers: its ids, its output encoded
as JSON (orjson) and, for its inputs, the request body it was parsed from (bytes). It keeps no
reference to its rows or outputs: queued dicts and lists, alive until the writer took them, set off
the garbage collector (the young generation filled with them and was collected every hundred
requests: 3-5 microseconds a request on a serving worker), while a tuple of atoms is untracked by
the first young collection that sees it; and encoding the rows on the request cost 5-6
microseconds where the model and the HTTP stack keep the caches busy. A writer thread drains the
queue every :attr:`PredictionLog.flush_s` seconds, takes each row's JSON from its body as it builds
the blocks (the row's text as sent, for the usual ``{"rows": [row]}``: one scan of the body; other
bodies are parsed and their rows encoded) and inserts them as blocks (:mod:`kit.release._blocks`: one row per version,
route and up to 256 predictions) in one transaction per batch, together with their counts
(:mod:`kit.release._counts`). A full queue drops the request's rows and counts them, a failing
database drops the batch and counts it: neither ever delays or fails the answer. Retention is
bounded by age (``KIT_LOG_RETENTION_DAYS``) and by count (``KIT_LOG_MAX_ROWS``), enforced by the
writer every :attr:`PredictionLog.prune_s` seconds.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kit._json import json_default
from kit.errors import require
from kit.release import _blocks as blocks
from kit.release import _counts as counts
from kit.release._db import engine, redact, store_url, tables

log = logging.getLogger(__name__)

PRUNE_CHUNK = 100_000
"""Most predictions deleted for the row bound in one pruning round (the next round goes on)."""


def _encoder() -> Callable[[Any], str]:
    """JSON text of a row or an output: orjson when installed (several times faster), else the stdlib."""
    try:
        import orjson
    except ImportError:
        return lambda value: json.dumps(value, default=json_default)
    # dataclasses go to json_default too: a decoded image (kit.preprocess.DecodedImage) is its fingerprint
    options = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
    dumps = functools.partial(orjson.dumps, default=json_default, option=options)

    def encode(value: Any) -> str:
        return dumps(value).decode()

    return encode


_dumps = _encoder()


def _row_json(body: bytes) -> bytes:
    """The JSON (UTF-8) of the one row of a request body ``{"rows": [row]}``.

    The row's text as the client sent it when the body holds nothing else and the row no bracket
    (then the body's only array is ``rows``, and its only element is the row): a scan of the body,
    several times cheaper than encoding the parsed row again. Any other body is parsed and the row
    encoded. The bodies JSON encoders write (``{"rows": [`` or ``{"rows":[`` first, ``]}`` last)
    take one scan: with no ``]`` between, the array that opens first closes last, so what lies
    between is its one element.
    """
    if body[-2:] == b"]}" and (body[:10] == b'{"rows": [' or body[:9] == b'{"rows":['):
        start = 10 if body[8] == 32 else 9
        if body.find(b"]", start, len(body) - 2) < 0:
            return body[start:-2]
    start, end = body.find(b"["), body.rfind(b"]")
    if 0 < start < end and _ROWS_KEY.fullmatch(body, 0, start) and body[end + 1:].strip() == b"}":
        row = body[start + 1:end].strip()
        if row[:1] == b"{" and b"[" not in row and b"]" not in row:
            return row
    return _dumps(blocks.loads(body)["rows"][0]).encode()


_ROWS_KEY = re.compile(rb'\s*\{\s*"rows"\s*:\s*')


class Ids:
    """Prediction ids unique across processes and machines: a random per-process prefix and a counter."""

    def __init__(self) -> None:
        self.prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def take(self, n: int) -> tuple[str, ...]:
        """``n`` fresh ids."""
        p, count = self.prefix, self._count
        if n == 1:
            return (f"{p}{next(count):010x}",)
        return tuple([f"{p}{next(count):010x}" for _ in range(n)])

    def one(self) -> str:
        """One fresh id."""
        return f"{self.prefix}{next(self._count):010x}"


class PredictionLog:
    """A background writer of predictions into the release store.

    Args:
        url: The store (default: ``KIT_LOG_URL``, else SQLite in ``$BENTOML_HOME``).
        queue_size: Requests held in memory before new ones are dropped (and counted).
        batch_rows: Rows per insert transaction.
        flush_s: How often the writer drains the queue.
        retention_days: Predictions older than this are deleted (``0``: kept by age forever).
        max_rows: At most this many predictions are kept (the oldest go first; ``0``: no limit).
        on_drop: Called with the number of rows dropped (full queue or failed write), for metrics.
    """

    prune_s = 60.0

    def __init__(self, url: str | None = None, *, queue_size: int = 10_000, batch_rows: int = 2_000,
                 flush_s: float = 0.5, retention_days: float = 30.0, max_rows: int = 1_000_000,
                 on_drop: Callable[[int, str], None] | None = None) -> None:
        self.url = store_url(url)
        self.queue_size = queue_size
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.retention_s = retention_days * 86400.0
        self.max_rows = max_rows
        self.on_drop = on_drop
        self.ids = Ids()
        self.written = 0
        self.dropped = 0
        self.failed = 0
        # the queue: one tuple of text and numbers per request (see record); the writer takes the first len()
        self._queue: list[tuple[Any, ...]] = []
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._last_error = 0.0
        self._last_prune = time.monotonic()
        engine(self.url)  # open (and create the tables) now: a bad URL fails at startup, not per request
        self.counted_since = counts.ensure(self.url)
        self._thread = threading.Thread(target=self._run, name="kit-prediction-log", daemon=True)
        self._thread.start()

    def record(self, name: str, tag: str, route: str, ids: Sequence[str], rows: Sequence[dict[str, Any]],
               outputs: Sequence[dict[str, Any]] | None, latency_ms: float, error: str | None = None,
               body: bytes | None = None, outputs_json: bytes | None = None) -> bool:
        """Queue one request's predictions (never blocks); ``False`` if the queue was full and they were dropped.

        Args:
            name: The model name.
            tag: The version that made (or failed to make) the predictions.
            route: ``champion``, ``canary`` or ``shadow``.
            ids: One prediction id per row.
            rows: The request's rows (not kept: their JSON is taken from ``body``, or encoded now).
            outputs: One output record per row, or ``None`` if the version failed.
            latency_ms: The request's model time (each row is logged with its share).
            error: Why the version failed, if it did.
            body: The request body the rows were parsed from (``{"rows": rows, ...}``): the writer takes
                their JSON from it, and the request keeps no reference to them (see the module docstring).
                Without it, the rows are encoded now.
            outputs_json: ``outputs`` as one JSON array, if the caller encoded them already (the answer):
                a one-row request's output is taken from it (``[output]``) instead of encoded again.
        """
        q = self._queue
        n = len(ids)
        if len(q) >= self.queue_size:
            self.dropped += n
            if self.on_drop is not None:
                self.on_drop(n, "queue_full")
            return False
        if not n:
            return True
        dumps = _dumps
        if n == 1:  # the common case
            out = outputs[0] if outputs is not None else None
            q.append((ids[0], route, time.time(), name, tag, body if body is not None else dumps(rows[0]),
                      None if out is None else outputs_json[1:-1] if outputs_json is not None else dumps(out),
                      None if out is None else str(out.get("prediction"))[:200], latency_ms, error))
        else:
            q.append((tuple(ids), route, time.time(), name, tag,
                      body if body is not None else tuple([dumps(r) for r in rows]),
                      None if outputs is None else tuple([dumps(o) for o in outputs]),
                      None if outputs is None else tuple([str(o.get("prediction"))[:200] for o in outputs]),
                      latency_ms / n, error))
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (tests, shutdown); ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._queue and self._idle.is_set():
                return True
            self._wake.set()
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and stop the writer."""
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        """Rows written, dropped and failed, and requests queued now."""
        return {"store": redact(self.url), "written": self.written, "dropped": self.dropped,
                "failed": self.failed, "queued": len(self._queue), "queue_size": self.queue_size}

    # -- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self._idle.clear()
            try:
                rows = self._take()
                for start in range(0, len(rows), self.batch_rows):
                    self._write(rows[start:start + self.batch_rows])
                if time.monotonic() - self._last_prune > self.prune_s:
                    self._last_prune = time.monotonic()
                    self.prune()
            except Exception as exc:  # never let the writer die: a later batch may succeed
                self._warn(f"prediction log writer: {exc}")
            finally:
                self._idle.set()

    def _take(self) -> list[tuple[Any, ...]]:
        """Every request queued so far, as predictions in :data:`~kit.release._blocks.COLUMNS` order.

        A one-row request's prediction is its queued tuple itself, its ``inputs`` the request body
        (:func:`kit.release._blocks.block` takes the row's JSON from it with :func:`_row_json`);
        a request of several rows is split into one prediction per row, each with its row's JSON.
        """
        q = self._queue
        n = len(q)
        if not n:
            return []
        taken = q[:n]
        del q[:n]  # requests queued meanwhile stay (appended after the first n)
        if all(type(t[0]) is str for t in taken):  # one-row requests (the usual case): taken as they are
            return taken
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        for t in taken:
            ids, route, at, name, tag, inputs, output, prediction, latency, error = t
            if type(ids) is str:  # one row
                append(t)
                continue
            if type(inputs) is bytes:
                inputs = [_dumps(r) for r in blocks.loads(inputs)["rows"]]
            for i, pid in enumerate(ids):
                append((pid, route, at, name, tag, inputs[i], None if output is None else output[i],
                        None if prediction is None else prediction[i], latency, error))
        return rows

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        sa = require("sqlalchemy", "serve")
        parts = blocks.groups(rows)
        try:
            with engine(self.url).begin() as conn:
                blocks.insert(conn, [blocks.block(part, _row_json) for part in parts])
                counts.add(conn, counts.tally(rows, self.counted_since))
        except sa.exc.IntegrityError:  # a block already written (its first id on its route): write the others
            self._write_each(parts)
        except sa.exc.SQLAlchemyError as exc:
            self.failed += len(rows)
            if self.on_drop is not None:
                self.on_drop(len(rows), "write_failed")
            self._warn(f"cannot write {len(rows)} predictions to {redact(self.url)}: {str(exc).splitlines()[0]}")
        else:
            self.written += len(rows)

    def _write_each(self, parts: list[list[tuple[Any, ...]]]) -> None:
        sa = require("sqlalchemy", "serve")
        for part in parts:
            try:
                with engine(self.url).begin() as conn:
                    blocks.insert(conn, [blocks.block(part, _row_json)])
                    counts.add(conn, counts.tally(part, self.counted_since))
                self.written += len(part)
            except sa.exc.SQLAlchemyError:
                self.failed += len(part)

    def prune(self, now: float | None = None) -> int:
        """Apply the retention bounds now; returns the predictions deleted.

        By age, whole count buckets go: predictions up to :data:`~kit.release._counts.BUCKET_S` seconds
        older than the retention may stay until the next round. By count, the oldest blocks go, and
        the oldest predictions of the block that crosses the bound (at most :data:`PRUNE_CHUNK` a round).
        """
        sa = require("sqlalchemy", "serve")
        t = tables()
        b = t.blocks
        now = time.time() if now is None else now
        deleted = 0
        with engine(self.url).begin() as conn:
            since = counts.since(conn)
            if self.retention_s > 0:
                cutoff = now - self.retention_s
                start = counts.drop_before(conn, cutoff)  # whole buckets, with their predictions
                old = [b.c.at_last < start]
                deleted += int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(b.c.n), 0)).where(*old))
                               .scalar_one())
                conn.execute(sa.delete(b).where(*old))
                for block in conn.execute(sa.select(b).where(b.c.at < start, b.c.at_last >= start)).all():
                    keep = [at >= start for at in blocks.decode(block, ("ats",))["ats"]]
                    deleted += keep.count(False)
                    blocks.rewrite(conn, block, keep)  # the buckets of what goes were dropped above
                conn.execute(sa.delete(t.feedback).where(t.feedback.c.at < cutoff))
            total = int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(b.c.n), 0))).scalar_one())
            excess = min(total - self.max_rows, PRUNE_CHUNK) if self.max_rows > 0 else 0
            whole: list[tuple[str, str]] = []
            for route, first, n in conn.execute(sa.select(b.c.route, b.c.first_id, b.c.n)
                                                .order_by(b.c.at_last, b.c.first_id)) if excess > 0 else ():
                if excess <= 0:
                    break
                if n <= excess:  # the oldest blocks beyond the bound go whole
                    whole.append((route, first))
                    excess -= n
                    continue
                block = conn.execute(sa.select(b).where(b.c.route == route, b.c.first_id == first)).one()
                ats = blocks.decode(block, ("ats",))["ats"]
                gone = set(sorted(range(len(ats)), key=lambda i: (ats[i], i))[:excess])
                keep = [i not in gone for i in range(len(ats))]
                counts.subtract(conn, counts.tally([r for r, k in zip(blocks.to_rows(block), keep, strict=True)
                                                    if not k], since))
                blocks.rewrite(conn, block, keep)  # and the oldest predictions of the one crossing it
                deleted += excess
                excess = 0
            for i in range(0, len(whole), 200):
                where = sa.or_(*[sa.and_(b.c.route == r, b.c.first_id == f) for r, f in whole[i:i + 200]])
                heads = conn.execute(sa.select(b.c.route, b.c.name, b.c.tag, b.c.n, b.c.ats, b.c.messages)
                                     .where(where)).all()
                counts.subtract(conn, counts.tally_blocks(heads, since))
                deleted += sum(int(h.n) for h in heads)
                conn.execute(sa.delete(b).where(where))
        return int(deleted)

    def _warn(self, message: str) -> None:
        if time.monotonic() - self._last_error > 60:  # at most one warning a minute
            self._last_error = time.monotonic()
            log.warning("%s", message)
