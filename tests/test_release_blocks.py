"""The prediction log's blocks: what goes in comes back, ids are found whatever the order, limits hold."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from kit.release import PredictionLog, predictions, record, store_url
from kit.release import _blocks as blocks
from kit.release._db import engine
from kit.release._log import Ids


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return store_url(tmp_path / "release.db")


def _row(pid: str, route: str, at: float, tag: str = "m:1", failed: bool = False) -> tuple[Any, ...]:
    inputs = json.dumps({"x": at, "id": pid, "text": "a [b] \"c\""})
    return (pid, route, at, "m", tag, inputs, None if failed else json.dumps({"prediction": pid[-1]}),
            None if failed else pid[-1], 0.5, "error: RuntimeError: x" if failed else None)


def test_blocks_give_back_every_prediction(url: str) -> None:
    rng = random.Random(3)
    ids = Ids()
    rows = [_row(ids.take(1)[0], rng.choice(["champion", "canary"]), 1000.0 + i / 100, failed=i % 7 == 0)
            for i in range(700)]
    log = PredictionLog(url, flush_s=3600)
    log._write(rows)
    got = predictions("m", url)
    assert len(got) == 700 and log.written == 700
    by_id = {r["prediction_id"]: r for r in got}
    for r in rows:
        g = by_id[r[0]]
        assert (g["route"], g["at"], g["tag"], g["prediction"], g["latency_ms"], g["error"]) == (
            r[1], r[2], r[4], r[7], r[8], r[9])
        assert g["inputs"] == json.loads(r[5]) and g["output"] == (None if r[6] is None else json.loads(r[6]))
    assert [r["at"] for r in got] == sorted((r[2] for r in rows), reverse=True)  # newest first
    assert [r["prediction_id"] for r in predictions("m", url, limit=5)] == [r["prediction_id"] for r in got[:5]]
    window = predictions("m", url, since=1001.0, until=1002.0)
    assert {r["prediction_id"] for r in window} == {r[0] for r in rows if 1001.0 <= r[2] <= 1002.0}
    with engine(url).connect() as conn:
        heads = conn.exec_driver_sql("select route, n, errors, at, at_last from kit_prediction_blocks").all()
    assert all(n <= blocks.BLOCK_ROWS and at_last - at <= blocks.SPAN_S for _, n, _, at, at_last in heads)
    assert sum(h[2] for h in heads) == sum(r[9] is not None for r in rows)
    log.close()


def test_a_block_never_spans_more_than_its_limit() -> None:
    ids = Ids()
    rows = [_row(ids.take(1)[0], "champion", 1000.0 + t) for t in (0, 1, 2, 30, 31, 5, 60, 61, 62, 0.5)]
    parts = blocks.groups(rows)
    assert sorted(r[0] for p in parts for r in p) == sorted(r[0] for r in rows)
    for part in parts:
        ats = [r[2] for r in part]
        assert max(ats) - min(ats) <= blocks.SPAN_S
        assert [r[0] for r in part] == sorted(r[0] for r in part)


def test_every_labelled_id_is_found_on_each_route_it_was_logged(url: str) -> None:
    """Two workers' ids, champion and canary interleaved, shadow scores written late and out of order."""
    rng = random.Random(5)
    log = PredictionLog(url, flush_s=3600)
    logged: dict[str, set[str]] = {}
    shadow_late: list[tuple[Any, ...]] = []
    for _worker in range(2):
        ids = Ids()
        for flush in range(4):
            batch = []
            for i in range(300):
                pid = ids.take(1)[0]
                route = "canary" if rng.random() < 0.2 else "champion"
                at = 2000.0 + flush + i / 1000
                batch.append(_row(pid, route, at, "m:2" if route == "canary" else "m:1"))
                logged.setdefault(pid, set()).add(route)
                if route == "champion" and rng.random() < 0.5:
                    shadow = _row(pid, "shadow", at + 0.01, "m:2")
                    (shadow_late if rng.random() < 0.1 else batch).append(shadow)
                    logged[pid].add("shadow")
            rng.shuffle(batch)
            log._write(batch)
        rng.shuffle(shadow_late)
        log._write(shadow_late)  # overlapping shadow blocks: found through the nearest blocks below
        shadow_late = []
    unknown = [Ids().take(1)[0], "0" * 26, "f" * 26, "not-an-id", uuid.uuid4().hex]
    labels = {pid: json.dumps("1") for pid in [*logged, *unknown]}
    got = record(labels, url)
    assert got == {"accepted": len(labels), "matched": len(logged), "unmatched": len(unknown)}
    with engine(url).connect() as conn:
        found = blocks.locate(conn, fields=("ats", "outputs"))
    assert set(found) == set(logged)
    for pid, hits in found.items():
        assert sorted(block["route"] for _, block, _ in hits) == sorted(logged[pid])
        for label, _, values in hits:
            assert label == json.dumps("1") and values["outputs"] == {"prediction": pid[-1]}
    log.close()


def test_a_body_whose_text_is_not_one_row_is_logged_as_parsed(url: str) -> None:
    """``{"rows": [A], "rows": [B]}`` passes the scan's bracket test only as a whole: the row is encoded again."""
    log = PredictionLog(url, flush_s=3600)
    body = b'{"rows": [{"a": 1}], "rows": [{"a": 2}]}'
    pid = log.ids.take(1)
    log.record("m", "m:1", "champion", pid, [{"a": 2}], [{"prediction": 1}], 1.0, body=body)
    assert log.flush(30)
    assert predictions("m", url)[0]["inputs"] == {"a": 2}
    log.close()


def test_labels_outside_the_window_cost_no_lookup_each(url: str) -> None:
    """A report's window skips the blocks outside it: a few statements, not one per label."""
    import sqlalchemy as sa

    log = PredictionLog(url, flush_s=3600)
    ids = Ids()
    old = [_row(ids.take(1)[0], "champion", 1000.0 + i / 100) for i in range(600)]
    new = [_row(ids.take(1)[0], "champion", 5000.0 + i / 100) for i in range(300)]
    log._write(old)
    log._write(new)
    record({r[0]: json.dumps("1") for r in [*old, *new]}, url)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    eng = engine(url)
    sa.event.listen(eng, "before_cursor_execute", count)
    try:
        with eng.connect() as conn:
            found = blocks.locate(conn, fields=("ats",), where=blocks.overlapping("m", 4000.0, 6000.0))
    finally:
        sa.event.remove(eng, "before_cursor_execute", count)
    assert set(found) == {r[0] for r in new}
    assert len(statements) < 10, len(statements)
    log.close()
