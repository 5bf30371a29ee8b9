"""What safe releases cost: the prediction log, routing and a 10 % canary vs kit with both off.

Three real servers on 127.0.0.1, started by this run on this machine, with the same model, workers,
threads and runtime:

  (a) kit       `bentoml serve bentos` with KIT_RELEASE=0: no routing, no ids, no log
  (b) bare      the release path with nothing to do: KIT_RELEASE=1, KIT_LOG=0, one version, no trial
                (ids and the X-Kit-Model header only), so (c)/(b) is the cost of the log, the routing
                and the canary on one request path whatever that path costs
  (c) release   the service following the name's release state: champion + a 10 % canary challenger
                (another version), a prediction id per row and the prediction log (SQLite in the
                run's BENTOML_HOME, background writer)

The load generator of bench/serve.py (one row per request, closed loop, keep-alive) runs both at
concurrency 1, 8, 32 and 64 in interleaved rounds (a, b, a, b, ...) so both see the same machine
load, and prints rows/s per round and the (c)/(a) and (c)/(b) throughput ratios per level (goal: >= 0.90).
Requests carry no key, so each draws its route at random (10 % to the canary); the sticky hash a
keyed request costs instead is timed on its own and printed (about a microsecond).
Run: .venv/bin/python bench/release.py [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import LEVELS, free_port, load  # the same load generator as bench/serve.py


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="load time per level and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per level")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kit-bench-release-"))
    os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
    os.environ.pop("KIT_LOG_URL", None)
    import kit
    from kit import package, quantize
    from kit.release import bucket
    from kit.train import train

    result = train("breast_cancer", kit.TrainConfig(epochs=args.epochs, seed=0))
    served = quantize.attach(result.bundle, quantize.select(quantize.compare(result.bundle), budget=0.005))
    v1 = package.save(served, "bench-rel")
    v2 = package.save(served.with_section("note", {"v": 2}), "bench-rel")
    package.promote(v1, "bench champion")
    package.promote(v2, "bench canary", canary=10)
    solo = package.save(served, "bench-solo")  # never promoted: no trial
    rows = result.splits.test.X.to_dict("records")
    workers = os.cpu_count() or 1
    t0 = time.perf_counter()
    n = 200_000
    for i in range(n):
        bucket("bench-rel", f"user-{i}")
    print(f"model {v1} (+ canary {v2} at 10%): {served}; one row per request, {args.seconds:.0f}s x "
          f"{args.rounds} rounds per level, {workers} workers, {os.cpu_count()} CPUs, load {_load()}; "
          f"sticky bucket {1e6 * (time.perf_counter() - t0) / n:.2f} us per key\n", flush=True)

    common = {"KIT_API_KEY": "", "KIT_WORKERS": str(workers)}
    servers: dict[str, tuple[Any, str]] = {}
    plan = (("kit", v1, {"KIT_RELEASE": "0", "KIT_LOG": "0"}), ("bare", solo, {"KIT_RELEASE": "1", "KIT_LOG": "0"}),
            ("release", "bench-rel", {"KIT_RELEASE": "1"}))  # by name: follows (champion v1 + canary v2)
    for name, tag, env in plan:
        port = free_port()
        with open(tmp / f"{name}.log", "wb") as log:
            proc = package.start(tag, port=port, env={**common, **env}, wait=180, log=log)
        servers[name] = (proc, f"http://127.0.0.1:{port}")
    try:
        results: dict[str, dict[int, list[dict[str, float]]]] = {name: {c: [] for c in LEVELS} for name in servers}
        for _, url in servers.values():
            asyncio.run(load(url + "/predict", rows, 8, 1.5))  # warm-up
        for c in LEVELS:
            for r in range(args.rounds):
                for name, (_, url) in servers.items():
                    out = asyncio.run(load(url + "/predict", rows, c, args.seconds))
                    results[name][c].append(out)
                    print(f"{name:8} c={c:<3} round {r + 1}: {out['rows_s']:8.0f} rows/s  p50 {out['p50']:6.2f} ms  "
                          f"p99 {out['p99']:6.2f} ms  errors {out['errors']}", flush=True)
        stats = _served_stats(servers["release"][1])
    finally:
        for proc, _ in servers.values():
            package.stop(proc)

    print(f"\nload after the run: {_load()}; release server: {stats}")
    print("\n| concurrency | kit rows/s | bare rows/s | release rows/s | release / kit | release / bare "
          "| p99 ms kit / bare / release | errors |")
    print("|---|---|---|---|---|---|---|---|")
    worst = {"kit": float("inf"), "bare": float("inf")}
    for c in LEVELS:
        rate = {n: float(np.mean([x["rows_s"] for x in results[n][c]])) for n in results}
        p99 = {n: float(np.mean([x["p99"] for x in results[n][c]])) for n in results}
        errors = sum(x["errors"] for name in results for x in results[name][c])
        for base in worst:
            worst[base] = min(worst[base], rate["release"] / rate[base])
        print(f"| {c} | {rate['kit']:.0f} | {rate['bare']:.0f} | {rate['release']:.0f} | "
              f"{rate['release'] / rate['kit']:.2f} | {rate['release'] / rate['bare']:.2f} | "
              f"{p99['kit']:.1f} / {p99['bare']:.1f} / {p99['release']:.1f} | {errors} |")
    for base, ratio in worst.items():
        print(f"worst release / {base}: {ratio:.2f} -> goal (costs <= 10 %) {'met' if ratio >= 0.9 else 'NOT met'}")
    return 0


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _served_stats(url: str) -> dict[str, Any]:
    import httpx

    info = httpx.get(url + "/release", timeout=30).json()
    perf = httpx.get(url + "/performance", params={"window": "1h"}, timeout=120).json()
    return {"logged": info["log"], "routes": {v["tag"]: v["routes"] for v in perf["versions"]}}


if __name__ == "__main__":
    sys.exit(main())
