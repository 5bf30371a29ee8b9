"""What the release's parts cost on the event loop, without HTTP: the fast path driven in one process.

``bench/release.py`` prices the release end to end on real servers, but its rounds swing by ±15 %
on a 2-core machine shared with the load generator, so a part that costs a few microseconds is
lost in it. This script calls kit's ``POST /predict`` fast path (:func:`kit.serving._fastpath.predict`,
the same code the server runs after uvicorn has parsed the HTTP request) directly on one event loop,
``--per-turn`` requests at a time (one row each, gathered, so the batcher merges them as it does
under load), for five set-ups of the same model and runtime (ONNX Runtime, ``--variant``):

  kit       ``KIT_RELEASE=0``: no routing, ids or log
  bare      the release with nothing to do: one version, no log (ids and the ``X-Kit-Model`` header)
  canary    a 10 % canary challenger (another version), no log
  log       one version, the prediction log (SQLite, background writer)
  release   both: the canary and the log

in interleaved rounds (the order rotates every round). Printed per set-up: the event-loop thread's
CPU per request (``time.thread_time``), the whole process's (``time.process_time``: the log's
writer thread too), and the medians of their paired differences from *kit*, which cancel the
machine's drift between rounds. Not measured here: the HTTP layer (the same for all five) and how
the parts change the batches a real server forms under load.

Run: .venv/bin/python bench/release_loop.py [--per-turn 8] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SETUPS = ("kit", "bare", "canary", "log", "release")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-turn", type=int, default=8, help="concurrent one-row requests per event-loop turn")
    parser.add_argument("--turns", type=int, default=400, help="turns per set-up and round")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--variant", default="ort-int8-dynamic", help="the runtime variant every set-up runs")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kit-bench-release-loop-"))
    os.environ["BENTOML_HOME"] = str(home)
    import kit
    from kit import quantize
    from kit.train import train

    result = train("breast_cancer", kit.TrainConfig(epochs=args.epochs, seed=0))
    bundle = quantize.attach(result.bundle, args.variant)
    rows = result.splits.test.X.to_dict("records")
    bodies = [json.dumps({"rows": [row]}).encode() for row in rows]
    states = {name: _state(name, bundle, home) for name in SETUPS}
    gc.freeze()  # as a serving worker does once its release runs (kit.serving._release.start_release)
    print(f"{bundle}; {args.per_turn} one-row requests a turn, {args.turns} turns x {args.rounds} rounds per "
          f"set-up, load {_load()}", flush=True)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in SETUPS}

    async def drive(state: Any, turns: int, offset: int) -> None:
        n = args.per_turn
        for t in range(turns):
            await asyncio.gather(*[_request(state, bodies[(offset + t * n + i) % len(bodies)]) for i in range(n)])

    async def run() -> None:
        for name in SETUPS:
            await drive(states[name], 100, 0)  # warm-up: the runtimes, the log's tables
        for r in range(args.rounds):
            k = r % len(SETUPS)
            for name in SETUPS[k:] + SETUPS[:k]:
                thread, process = time.thread_time(), time.process_time()
                await drive(states[name], args.turns, r)
                n = args.turns * args.per_turn
                runs[name].append(((time.thread_time() - thread) / n * 1e6, (time.process_time() - process) / n * 1e6))
                await asyncio.sleep(0.1)

    asyncio.run(run())
    for name in ("log", "release"):
        log = states[name].release.log
        log.flush()
        assert log.written > 0 and log.dropped == 0 and log.failed == 0, log.stats()
    print("\n| set-up | event loop µs/request | process µs/request | event loop - kit (paired median) "
          "| process - kit (paired median) |\n|---|---|---|---|---|")
    for name in SETUPS:
        loop = statistics.median(x[0] for x in runs[name])
        proc = statistics.median(x[1] for x in runs[name])
        d_loop = statistics.median(x[0] - y[0] for x, y in zip(runs[name], runs["kit"], strict=True))
        d_proc = statistics.median(x[1] - y[1] for x, y in zip(runs[name], runs["kit"], strict=True))
        print(f"| {name} | {loop:.1f} | {proc:.1f} | {d_loop:+.1f} | {d_proc:+.1f} |")
    print(f"\nload after the run: {_load()}")
    return 0


def _state(name: str, bundle: Any, home: Path) -> Any:
    """The fast path's state for one set-up, built as a serving worker builds it."""
    from kit.release import store_url
    from kit.release._runtime import ReleaseRuntime, Target
    from kit.release._settings import ReleaseSettings
    from kit.serving._admission import AdmissionState
    from kit.serving._settings import Settings

    state = AdmissionState(Settings.from_env())
    state.attach(bundle, "bench:1")
    if name == "kit":
        return state
    assert state.model is not None and state.batcher is not None
    other = AdmissionState(Settings.from_env())

    def loader(tag: str, role: str) -> Target:
        model, batcher = other.prepare(bundle.with_section("note", {"v": 2}), tag)
        return Target(tag, model, batcher.submit, batcher)

    settings = ReleaseSettings(log=name in ("log", "release"), store=store_url(str(home / f"{name}.db")),
                               challenger="bench:2" if name in ("canary", "release") else None, canary_percent=10)
    state.release = ReleaseRuntime(Target("bench:1", state.model, state.batcher.submit, state.batcher), settings,
                                   loader, start=False)
    return state


async def _request(state: Any, body: bytes) -> None:
    from kit.serving import _fastpath

    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/predict", "method": "POST", "headers": [(b"content-type", b"application/json")]}
    await _fastpath.predict(state, scope, receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"/predict answered {sent[0]['status']}: {sent[1].get('body', b'')[:300]!r}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    raise SystemExit(main())
