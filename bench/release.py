"""What safe releases cost: the prediction log, routing and a 10 % canary vs kit with both off.

Three real servers on 127.0.0.1, started by this run on this machine, with the same model, runtime
(ONNX Runtime, ``--variant``), workers (one per CPU, kit's default) and path (kit's /predict fast path):

  (a) kit       `bentoml serve bentos` with KIT_RELEASE=0: no routing, no ids, no log
  (b) bare      the release path with nothing to do: KIT_RELEASE=1, KIT_LOG=0, one version, no trial
                (ids and the X-Kit-Model header only), so (c)/(b) is the cost of the log, the routing
                and the canary on one request path whatever that path costs
  (c) release   the service following the name's release state: champion + a 10 % canary challenger
                (another version), a prediction id per row and the prediction log (SQLite in the
                run's BENTOML_HOME, background writer)

The servers and load generator of bench/serve.py (one row per request, closed loop, keep-alive) run
them side by side at concurrency 1, 8, 32 and 64 in interleaved rounds (the order rotates every round)
so all see the same machine load, and print rows/s per round and the (c)/(a) and (c)/(b) throughput
ratios per level (goal: (c)/(a) >= 0.90).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import LEVELS, Servers, load, summary  # the same servers and load generator as bench/serve.py


EXTRA = dict(x.split("=", 1) for x in os.environ.get("BENCH_EXTRA", "").split(",") if x)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="load time per level and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per level")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--variant", default="ort-int8-dynamic", help="the runtime variant every server runs")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kit-bench-release-"))
    os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
    os.environ.pop("KIT_LOG_URL", None)
    import kit
    from kit import package, quantize
    from kit.release import bucket
    from kit.serving import cpu_count
    from kit.train import train

    result = train("breast_cancer", kit.TrainConfig(epochs=args.epochs, seed=0))
    served = quantize.attach(result.bundle, args.variant)
    v1 = package.save(served, "bench-rel")
    v2 = package.save(served.with_section("note", {"v": 2}), "bench-rel")
    package.promote(v1, "bench champion")
    package.promote(v2, "bench canary", canary=10)
    solo = package.save(served, "bench-solo")  # never promoted: no trial
    rows = result.splits.test.X.to_dict("records")
    workers = cpu_count()
    t0 = time.perf_counter()
    n = 200_000
    for i in range(n):
        bucket("bench-rel", f"user-{i}")
    print(f"model {v1} (+ canary {v2} at 10%): {served}; one row per request, {args.seconds:.0f}s x "
          f"{args.rounds} rounds per level, {workers} workers per server, {os.cpu_count()} CPUs, load {_load()}; "
          f"sticky bucket {1e6 * (time.perf_counter() - t0) / n:.2f} us per key\n", flush=True)

    servers = Servers(tmp, workers)
    plan = (("kit", v1, {"KIT_RELEASE": "0", "KIT_LOG": "0"}), ("bare", solo, {"KIT_RELEASE": "1", "KIT_LOG": "0"}),
            ("release", "bench-rel", {"KIT_RELEASE": "1", **EXTRA}))  # by name: follows (champion v1 + canary v2)
    parts: dict[str, dict[int, list[dict[str, Any]]]] = {name: {c: [] for c in LEVELS} for name, _, _ in plan}
    try:
        for name, tag, env in plan:
            servers.kit(name, tag, "bc", env)
        servers.wait()
        for name, _, _ in plan:
            asyncio.run(load(servers.ports[name], rows, 8, 1.5))  # warm-up
        for r in range(args.rounds):
            for c in LEVELS:
                order = [p[0] for p in plan][r % len(plan):] + [p[0] for p in plan][:r % len(plan)]
                for name in order:
                    res = asyncio.run(load(servers.ports[name], rows, c, args.seconds))
                    parts[name][c].append(res)
                    s = summary([res])
                    print(f"  round {r + 1} c={c:<3} {name:8} {s['rows_s']:7.0f} rows/s  p50 {s['p50']:6.2f} ms  "
                          f"p99 {s['p99']:6.2f} ms  errors {s['errors']}", flush=True)
        stats = _served_stats(f"http://127.0.0.1:{servers.ports['release'][0]}")
    finally:
        servers.stop()

    results = {name: {c: summary(parts[name][c]) for c in LEVELS} for name in parts}
    print(f"\nload after the run: {_load()}; release server: {stats}")
    print("\n| concurrency | kit rows/s | bare rows/s | release rows/s | release / kit | release / bare "
          "| p50 / p99 ms kit | p50 / p99 ms release | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst = {"kit": float("inf"), "bare": float("inf")}
    for c in LEVELS:
        k, b, x = results["kit"][c], results["bare"][c], results["release"][c]
        for base in worst:
            worst[base] = min(worst[base], x["rows_s"] / results[base][c]["rows_s"])
        print(f"| {c} | {k['rows_s']:,.0f} | {b['rows_s']:,.0f} | {x['rows_s']:,.0f} | "
              f"{x['rows_s'] / k['rows_s']:.2f} | {x['rows_s'] / b['rows_s']:.2f} | "
              f"{k['p50']:.2f} / {k['p99']:.1f} | {x['p50']:.2f} / {x['p99']:.1f} | "
              f"{k['errors'] + b['errors'] + x['errors']} |")
    met = worst["kit"] >= 0.9
    for base, ratio in worst.items():
        print(f"worst release / {base}: {ratio:.2f} -> goal (costs <= 10 %) {'met' if ratio >= 0.9 else 'NOT met'}")
    return 0 if met else 1


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
