"""The prediction counts kept as predictions arrive: exact for any window, through writes and pruning."""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from kit.release import PredictionLog, predictions, store_url
from kit.release import _counts as counts
from kit.release._db import engine


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return store_url(tmp_path / "release.db")


def _rows(name: str, start: float, n: int, rng: random.Random) -> list[tuple[Any, ...]]:
    """Log rows in COLUMNS order made between ``start`` and ``start + 95`` s: two versions, three routes, errors."""
    out = []
    for _ in range(n):
        tag, route = rng.choice([(f"{name}:1", "champion"), (f"{name}:1", "champion"), (f"{name}:2", "canary"),
                                 (f"{name}:2", "shadow")])
        failed = rng.random() < 0.2
        out.append((uuid.uuid4().hex, route, start + rng.random() * 95, name, tag, "{}",
                    None if failed else '{"prediction": 1}', None if failed else "1", 1.0,
                    "error: RuntimeError: x" if failed else None))
    # the edges of a few buckets exactly, and the float just below one
    for at in (start + 20.0, start + 30.0, (start + 40.0) - 1e-6):
        out.append((uuid.uuid4().hex, "champion", at, name, f"{name}:1", "{}", "{}", "1", 1.0, None))
    return out


def _truth(url: str, name: str, since: float, until: float) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    for r in predictions(name, url, since=since, until=until):  # the log read back, one record per prediction
        c = out.setdefault((r["tag"], r["route"]), [0, 0])
        c[0] += 1
        c[1] += r["error"] is not None
    return out


def _check(url: str, name: str, start: float, rng: random.Random) -> None:
    windows = [(start - 50, start + 200), (start + 20.0, start + 30.0), (start + 25, start + 26),
               (start + 19.999, start + 40.0), (start + 5, start + 85), (start - 3, start + 3)]
    windows += [(a, a + rng.random() * 60) for a in (start - 20 + rng.random() * 130 for _ in range(40))]
    with engine(url).connect() as conn:
        for since, until in windows:
            assert counts.window(conn, name, since, until) == _truth(url, name, since, until), (since, until)


def _exercise(url: str) -> None:
    name = f"m{uuid.uuid4().hex[:8]}"
    rng = random.Random(7)
    log = PredictionLog(url, flush_s=3600, max_rows=0, retention_days=0)
    start = log.counted_since + 1000.0
    begun = log.counted_since
    log._write(_rows(name, begun - 100, 300, rng))  # made before the counts began: counted from the log
    log._write(_rows(name, begun, 200, rng))
    log._write(_rows(name, start, 1500, rng))
    log._write(_rows(name, start, 5, rng))
    assert log.written == 303 + 203 + 1503 + 8 and log.failed == 0
    _check(url, name, start, rng)
    _check(url, name, begun - 100, rng)  # across the time the counts began

    log.max_rows = 1000  # the oldest beyond the bound go, and leave the counts
    assert log.prune(now=start) == 2017 - 1000 and len(predictions(name, url)) == 1000  # exactly the bound
    _check(url, name, start, rng)
    log.max_rows, log.retention_s = 0, 1.0
    log.prune(now=start + 46.0)  # whole buckets before start + 45 s go, with their predictions
    oldest = min(r["at"] for r in predictions(name, url))
    assert counts.bucket(start + 45.0) * counts.BUCKET_S <= oldest < start + 46.0
    _check(url, name, start, rng)
    log.close()


def test_window_counts_equal_counting_the_rows_on_sqlite(url: str) -> None:
    _exercise(url)


@pytest.mark.postgres
def test_window_counts_equal_counting_the_rows_on_postgres(postgres_url: str) -> None:
    _exercise(postgres_url)


def test_the_counts_begin_once_per_store(url: str) -> None:
    first = PredictionLog(url).counted_since
    second = PredictionLog(url).counted_since  # another worker, later: the same beginning
    assert first == second == counts.ensure(url)


def test_buckets_split_at_exact_multiples() -> None:
    assert counts.bucket(20.0) == 2 and counts.bucket(20.0 - 1e-9) == 1 and counts.bucket(1_700_000_009.9999998) == \
        170_000_000
