"""What each layer of the BentoML service costs a one-row POST /predict, in process (no network, no client).

The kit service is loaded in this process exactly as `bentoml serve` loads it (bentos/service.py, the
Starlette app BentoML builds, its lifespan), and one-row requests are sent straight into the ASGI app:

  kit fast path (shipped)     the app as served: kit's layer in front answers /predict
  kit handler alone           the fast path's handler without the Starlette app around it
  fast path behind BentoML    the same code behind BentoML's middleware stack (what it costs to be inside)
  BentoML handler             KIT_FAST_PATH=0: BentoML's middleware, pydantic IO and adaptive batcher
  + <middleware>              kit's handler behind one BentoML middleware at a time, to price each
                              (its cost: this row minus "kit handler alone")

Requests run at concurrency 1 (one after another) and 16 (16 tasks on the loop, so kit's batcher
merges); each figure is the median of --rounds interleaved rounds, in microseconds of this process's
time per request. The access log writes a line per request, as in a server (silence it with 2>/dev/null):
Run: .venv/bin/python bench/serve_layers.py [--requests 2000] [--rounds 5] 2>/dev/null
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def scope_for(body: bytes) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 3000), "state": {}}


async def call(app: Callable[..., Any], body: bytes) -> int:
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope_for(body), receive, send)
    return status


async def timed(app: Callable[..., Any], bodies: list[bytes], n: int, concurrency: int) -> float:
    """Microseconds of this process per request."""
    async def worker(k: int) -> None:
        for i in range(k, n, concurrency):
            assert await call(app, bodies[i % len(bodies)]) == 200

    start = time.process_time()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return (time.process_time() - start) / n * 1e6


async def lifespan(app: Callable[..., Any]) -> Callable[[], Any]:
    """Start the app's lifespan (through the app, as uvicorn does); returns the shutdown coroutine."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started, stopped = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, Any]:
        return await queue.get()

    async def send(message: dict[str, Any]) -> None:
        (started if "startup" in message["type"] else stopped).set()

    queue.put_nowait({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send))
    await started.wait()

    async def shutdown() -> None:
        queue.put_nowait({"type": "lifespan.shutdown"})
        await stopped.wait()
        await task

    return shutdown


def layers(stack: Any) -> list[Any]:
    """The middleware instances of a built Starlette stack, outermost first (each has ``.app``)."""
    out = []
    while hasattr(stack, "app") and type(stack).__name__ != "Router":
        out.append(stack)
        stack = stack.app
    return out


async def measure(args: argparse.Namespace, bodies: list[bytes]) -> dict[str, dict[int, float]]:
    sys.path.insert(0, str(ROOT / "bentos"))
    from _bentoml_impl.loader import load
    from bentoml._internal.log import configure_server_logging

    configure_server_logging()  # as a server worker does: the access log writes its lines (to stderr)

    svc = load(str(ROOT / "bentos"), standalone_load=True)
    app = svc.to_asgi(is_main=True)
    shutdown = await lifespan(app)
    import service  # bentos/service.py, as loaded by BentoML above

    from kit.serving import FastPath, _fastpath

    state = service.STATE
    front = app.middleware_stack
    assert isinstance(front, FastPath), "the fast path is not in front"
    behind = front.app
    chain = layers(behind)

    async def kit_only(scope: Any, receive: Any, send: Any) -> None:
        await _fastpath.predict(state, scope, receive, send)

    configs: dict[str, Callable[..., Any]] = {"kit fast path (shipped)": app, "kit handler alone": kit_only,
                                              "fast path behind BentoML": behind}
    for layer in chain:
        name = type(layer).__name__
        if name in ("ServerErrorMiddleware", "AdmissionMiddleware", "ExceptionMiddleware", "ContextMiddleware"):
            continue
        clone = dataclasses.replace(layer) if dataclasses.is_dataclass(layer) else type(layer).__new__(type(layer))
        clone.__dict__.update(layer.__dict__)
        clone.app = kit_only
        configs[f"+ {name}"] = clone
    stock = dataclasses.replace(state.settings, fast_path=False)
    results: dict[str, dict[int, list[float]]] = {name: {1: [], 16: []} for name in [*configs, "BentoML handler"]}
    for r in range(args.rounds):
        for concurrency in (1, 16):
            for name, target in configs.items():
                results[name][concurrency].append(await timed(target, bodies, args.requests, concurrency))
            kept, state.settings = state.settings, stock
            try:
                n = max(200, args.requests // 4)  # BentoML's path is slow: fewer requests
                results["BentoML handler"][concurrency].append(await timed(behind, bodies, n, concurrency))
            finally:
                state.settings = kept
        print(f"round {r + 1} done", flush=True)
    await shutdown()
    return {name: {c: statistics.median(v) for c, v in per.items()} for name, per in results.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per configuration and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kit-bench-layers-"))
    os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
    import kit
    from kit import package, quantize
    from kit.train import train

    result = train("breast_cancer", kit.TrainConfig(epochs=30, seed=0))
    os.environ["KIT_MODEL_TAG"] = package.save(quantize.attach(result.bundle, "ort-int8-dynamic"), "layers")
    os.environ["KIT_API_KEY"] = ""
    bodies = [json.dumps({"rows": [r]}).encode() for r in result.splits.test.X.to_dict("records")]
    print(f"load average before: {os.getloadavg()}")
    out = asyncio.run(measure(args, bodies))
    base = out["kit fast path (shipped)"]
    print("\n| configuration | µs / request, concurrency 1 | µs / request, concurrency 16 | vs shipped (16) |")
    print("|---|---|---|---|")
    for name, per in out.items():
        print(f"| {name} | {per[1]:.0f} | {per[16]:.0f} | {per[16] / base[16]:.2f}x |")
    print(f"\nload average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
