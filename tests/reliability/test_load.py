"""Load: 5,000 one-row /predict requests at concurrency 32 against the running server.

Every answer must be a 200 equal to the in-process prediction for that row, and the server's
resident memory (its process and all children) may grow less than 10% between the first and the
last thousand requests.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
from _server import Server

pytestmark = [pytest.mark.server, pytest.mark.slow]

REQUESTS = 5000
CONCURRENCY = 32
SAMPLE_EVERY = 100


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: NaN becomes null."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in frame.astype(object).to_dict("records")]


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


async def hammer(url: str, headers: dict[str, str], rows: list[dict[str, Any]], expected: list[Any],
                 pid: int | None, n: int = REQUESTS, concurrency: int = CONCURRENCY,
                 on_done: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Send ``n`` one-row predictions with ``concurrency`` workers; check each answer.

    ``on_done(count)`` runs after every completed request (the fault test kills the server from it).
    """
    next_index = 0
    done = 0
    errors: list[str] = []
    latencies: list[float] = []
    rss: list[tuple[int, int]] = []
    # idle connections expire client-side before uvicorn's 5 s keep-alive closes them server-side, so a
    # request is never sent on a connection the server is closing (the classic keep-alive race)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index, done
        while next_index < n:
            i = next_index
            next_index += 1
            row = i % len(rows)
            start = time.perf_counter()
            try:
                response = await client.post("/predict", json={"rows": [rows[row]]})
                if response.status_code != 200:
                    errors.append(f"request {i}: {response.status_code} {response.text[:100]}")
                elif response.json()[0]["prediction"] != expected[row]:
                    errors.append(f"request {i}: predicted {response.json()[0]['prediction']!r}, "
                                  f"in-process {expected[row]!r}")
            except httpx.HTTPError as exc:
                errors.append(f"request {i}: {exc!r} after {time.perf_counter() - start:.3f}s")
            latencies.append(time.perf_counter() - start)
            done += 1
            if on_done is not None:
                on_done(done)
            if pid is not None and done % SAMPLE_EVERY == 0:
                rss.append((done, tree_rss(pid)))

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"done": done, "errors": errors, "latencies": np.array(latencies), "rss": rss, "elapsed": elapsed}


def test_load_5000_requests_no_errors_and_flat_memory(server: Server, auth: dict[str, str], rel_home,
                                                      mixed_result, ledger) -> None:
    bundle = rel_home["bundle"]
    test_x = mixed_result.splits.test.X
    expected = bundle.infer(test_x).labels
    out = asyncio.run(hammer(server.url, auth, records(test_x), expected, server.proc.pid))
    first = np.mean([b for n, b in out["rss"] if n <= 1000])
    last = np.mean([b for n, b in out["rss"] if n > REQUESTS - 1000])
    growth = last / first - 1.0
    lat = out["latencies"] * 1e3
    ledger.record("load", tried=out["done"], failures=len(out["errors"]), concurrency=CONCURRENCY,
                  rps=round(out["done"] / out["elapsed"]), p50_ms=round(float(np.percentile(lat, 50)), 1),
                  p99_ms=round(float(np.percentile(lat, 99)), 1), rss_first_mb=round(first / 2**20, 1),
                  rss_last_mb=round(last / 2**20, 1), rss_growth_pct=round(100 * growth, 2))
    assert out["done"] == REQUESTS
    assert not out["errors"], "\n".join(out["errors"][:10])
    assert growth < 0.10, f"server RSS grew {growth:.1%} between the first and last thousand requests"
