"""Serving benchmark: the kit service (adaptive batching) vs no batching vs a hand-written FastAPI app.

Three real servers on 127.0.0.1, started by this run on this machine, one at a time:

  (a) kit      `bentoml serve bentos` with adaptive batching, the runtime `kit quantize` chose
               (select within a 0.5-point budget) and one worker per CPU (KIT_WORKERS)
  (b) kit-nb   the same service with KIT_BATCHING=0
  (c) fastapi  a hand-written FastAPI + uvicorn endpoint: pydantic rows -> DataFrame ->
               preprocess -> torch fp32 eager forward -> softmax, per request

A bounded async load generator (raw asyncio HTTP/1.1 keep-alive, one row per request, closed loop) runs each server at
concurrency 1, 8, 32 and 64 for a fixed time and prints rows/s, p50, p99 and errors, then the
(a)/(c) throughput ratio per level. Run: .venv/bin/python bench/serve.py [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LEVELS = (1, 8, 32, 64)


class Rows(BaseModel):
    """The hand-written request model of baseline (c)."""

    rows: list[dict[str, float | str | None]]


def fastapi_app(bundle_dir: str) -> Any:
    """What users write by hand: torch fp32 eager, one forward per request."""
    import pandas as pd
    import torch
    from fastapi import FastAPI

    from kit import nets
    from kit.bundle import ModelBundle

    bundle = ModelBundle.load(bundle_dir)
    module = nets.build(bundle.spec)
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in bundle.weights.items()})
    module.eval()
    labels = list(bundle.label_names or [])

    app = FastAPI()

    @app.post("/predict")
    def predict(body: Rows) -> list[dict[str, Any]]:
        x = torch.from_numpy(bundle.preprocessor.transform(pd.DataFrame(body.rows)))
        with torch.inference_mode():
            proba = torch.softmax(module(x), dim=1).numpy()
        return [{"prediction": labels[int(p.argmax())], "probabilities": dict(zip(labels, p.tolist(), strict=True))}
                for p in proba]

    return app


async def load(url: str, rows: list[dict[str, Any]], concurrency: int, seconds: float) -> dict[str, float]:
    """Closed-loop load: ``concurrency`` keep-alive connections, one row per request, for ``seconds``.

    A lean HTTP/1.1 client on raw asyncio streams (pre-encoded requests, Content-Length framing)
    so that the load generator, which shares this machine's cores with the server, costs little
    per request and the servers are what is measured.
    """
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    bodies = [json.dumps({"rows": [r]}).encode() for r in rows]
    requests = [(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        n = i
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    writer.write(requests[n % len(requests)])
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                    status = int(head[9:12])
                    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:"))
                    await reader.readexactly(length)
                    ok = status == 200
                except (TimeoutError, OSError, asyncio.IncompleteReadError, StopIteration, ValueError):
                    ok = False
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
                n += concurrency
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {"rows_s": len(latencies) / elapsed, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "errors": errors}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_levels(name: str, url: str, rows: list[dict[str, Any]], seconds: float) -> dict[int, dict[str, float]]:
    asyncio.run(load(url + "/predict", rows, 8, 1.5))  # warm-up (runtime, batcher's latency model)
    out: dict[int, dict[str, float]] = {}
    for c in LEVELS:
        out[c] = asyncio.run(load(url + "/predict", rows, c, seconds))
        r = out[c]
        print(f"{name:8} c={c:<3} {r['rows_s']:8.0f} rows/s  p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms  "
              f"errors {r['errors']}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="load time per concurrency level")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--fastapi-app", help=argparse.SUPPRESS)  # internal: serve baseline (c) for a bundle
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fastapi_app:
        import uvicorn

        uvicorn.run(fastapi_app(args.fastapi_app), host="127.0.0.1", port=args.port, log_level="warning")
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="kit-bench-serve-"))
    os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
    import kit
    from kit import package, quantize
    from kit.train import train

    result = train("breast_cancer", kit.TrainConfig(epochs=args.epochs, seed=0))
    bundle_dir = result.bundle.save(tmp / "bundle")  # (c) serves these fp32 weights with torch
    choice = quantize.select(quantize.compare(result.bundle), budget=0.005)
    served = quantize.attach(result.bundle, choice)  # (a), (b): the chosen runtime
    tag = package.save(served, "bench")
    rows = result.splits.test.X.to_dict("records")
    print(f"model {tag}: {served}; {len(rows)} distinct rows, one row per request, "
          f"{args.seconds:.0f}s per level, {os.cpu_count()} CPUs\n", flush=True)

    workers = os.cpu_count() or 1
    results: dict[str, dict[int, dict[str, float]]] = {}
    for name, env in (("kit", {"KIT_BATCHING": "1"}), ("kit-nb", {"KIT_BATCHING": "0"})):
        port = free_port()
        with open(tmp / f"{name}.log", "wb") as log:
            proc = package.start(tag, port=port, env={**env, "KIT_API_KEY": "", "KIT_WORKERS": str(workers)},
                                 wait=180, log=log)
        try:
            results[name] = run_levels(name, f"http://127.0.0.1:{port}", rows, args.seconds)
        finally:
            package.stop(proc)
    port = free_port()
    with open(tmp / "fastapi.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, __file__, "--fastapi-app", str(bundle_dir), "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/docs", proc)
        results["fastapi"] = run_levels("fastapi", f"http://127.0.0.1:{port}", rows, args.seconds)
    finally:
        package.stop(proc)

    print("\n| concurrency | kit rows/s | kit p50/p99 ms | no-batch rows/s | no-batch p99 ms | fastapi rows/s "
          "| fastapi p50/p99 ms | errors kit/nb/fastapi | kit / fastapi |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in LEVELS:
        a, b, f = results["kit"][c], results["kit-nb"][c], results["fastapi"][c]
        print(f"| {c} | {a['rows_s']:.0f} | {a['p50']:.1f} / {a['p99']:.1f} | {b['rows_s']:.0f} | {b['p99']:.1f} | "
              f"{f['rows_s']:.0f} | {f['p50']:.1f} / {f['p99']:.1f} | {a['errors']}/{b['errors']}/{f['errors']} | "
              f"{a['rows_s'] / max(f['rows_s'], 1e-9):.2f}x |")
    a, f = results["kit"][32], results["fastapi"][32]
    ok = a["rows_s"] >= 3 * f["rows_s"] and a["p99"] <= f["p99"] and a["errors"] == 0
    ratio = a["rows_s"] / max(f["rows_s"], 1e-9)
    print(f"\nat concurrency 32: kit/fastapi throughput {ratio:.2f}x, p99 {a['p99']:.1f} vs "
          f"{f['p99']:.1f} ms, errors {a['errors']} -> goal (>= 3x, p99 no worse, 0 errors) "
          f"{'met' if ok else 'NOT met'}")
    return 0


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"baseline server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {timeout}s")


if __name__ == "__main__":
    sys.exit(main())
