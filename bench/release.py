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
so all see the same machine load. Printed per level: rows/s and the (c)/(a), (c)/(b) throughput ratios
(goal: (c)/(a) >= 0.90), and the servers' own CPU time per request (user + system, all workers, from
psutil), whose round-by-round ratio is far steadier than throughput on a machine shared with other
work: the load generator and other processes take cores from every server alike, CPU per request
counts only what the server spent.
Requests carry no key, so each draws its route at random (10 % to the canary); the sticky hash a
keyed request costs instead is timed on its own and printed (about a microsecond).

``--pin``: the servers run on the last CPU (one worker each: kit's default for one CPU) and the load
generator on the others, so a server's throughput is what its own core can do, not what it leaves
to the client: on a machine with few cores shared with the load generator, a server that spends
more per request also slows the client, which sends fewer requests per event-loop turn, so every
server batches less and spends more per request; the shared setup's ratios compound that.
Run: .venv/bin/python bench/release.py [--seconds 5] [--rounds 2] [--pin]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="load time per level and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per level")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--variant", default="ort-int8-dynamic", help="the runtime variant every server runs")
    parser.add_argument("--parts", action="store_true",
                        help="two more servers, to price the parts: canary (routing + canary, no log) and "
                             "log (one version, logged)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrency levels, comma-separated")
    parser.add_argument("--pin", action="store_true",
                        help="servers on the last CPU (one worker each), the load generator on the others")
    args = parser.parse_args()
    levels = [int(c) for c in args.levels.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) < 2:
        parser.error("--pin needs two CPUs (one for the servers, one for the load generator)")

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
    if args.pin:
        os.sched_setaffinity(0, cpus[-1:])  # the servers inherit it (and start one worker each) ...
    workers = cpu_count()
    t0 = time.perf_counter()
    n = 200_000
    for i in range(n):
        bucket("bench-rel", f"user-{i}")
    print(f"model {v1} (+ canary {v2} at 10%): {served}; one row per request, {args.seconds:.0f}s x "
          f"{args.rounds} rounds per level, {workers} workers per server, {os.cpu_count()} CPUs"
          f"{f' (servers on CPU {cpus[-1]}, load generator on {cpus[:-1]})' if args.pin else ''}, load {_load()}; "
          f"sticky bucket {1e6 * (time.perf_counter() - t0) / n:.2f} us per key\n", flush=True)

    servers = Servers(tmp, workers)
    plan = (("kit", v1, {"KIT_RELEASE": "0", "KIT_LOG": "0"}), ("bare", solo, {"KIT_RELEASE": "1", "KIT_LOG": "0"}),
            ("release", "bench-rel", {"KIT_RELEASE": "1"}))  # by name: follows (champion v1 + canary v2)
    if args.parts:
        plan += (("canary", "bench-rel", {"KIT_RELEASE": "1", "KIT_LOG": "0"}),
                 ("log", solo, {"KIT_RELEASE": "1"}))
    names = [p[0] for p in plan]
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {name: {c: [] for c in levels} for name in names}
    try:
        for name, tag, env in plan:
            servers.kit(name, tag, "bc", env)
        if args.pin:
            os.sched_setaffinity(0, cpus[:-1])  # ... and the load generator runs on the other CPUs
        servers.wait()
        trees = dict(zip(names, servers.procs, strict=True))
        for name in names:
            asyncio.run(load(servers.ports[name], rows, 8, 1.5))  # warm-up
        for r in range(args.rounds):
            for c in levels:
                k = r % len(names)
                for name in names[k:] + names[:k]:  # the order rotates every round
                    cpu = _cpu(trees[name])
                    res = asyncio.run(load(servers.ports[name], rows, c, args.seconds))
                    res["cpu_us"] = (_cpu(trees[name]) - cpu) * 1e6 / max(res["n"], 1)
                    runs[name][c].append(res)
                    s = summary([res])
                    print(f"  round {r + 1} c={c:<3} {name:8} {s['rows_s']:7.0f} rows/s  p50 {s['p50']:6.2f} ms  "
                          f"p99 {s['p99']:6.2f} ms  server CPU {res['cpu_us']:6.1f} us/request  errors {s['errors']}",
                          flush=True)
        stats = _served_stats(f"http://127.0.0.1:{servers.ports['release'][0]}")
    finally:
        servers.stop()
    print(f"\nload after the run: {_load()}; release server: {stats}")
    return 0 if _report(runs) else 1


def _report(runs: dict[str, dict[int, list[dict[str, Any]]]]) -> bool:
    """Throughput ratios (pooled rounds) and server-CPU-per-request ratios (median of the rounds' ratios)."""
    import numpy as np

    print("\n| concurrency | kit rows/s | bare rows/s | release rows/s | release / kit rows/s | release / bare rows/s "
          "| server CPU us/request kit / bare / release | CPU release / kit | p99 ms kit / release | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    worst = {"rows": float("inf"), "cpu": float("inf")}
    levels = list(next(iter(runs.values())))
    for c in levels:
        res = {n: summary(runs[n][c]) for n in runs}
        cpu = {n: float(np.median([x["cpu_us"] for x in runs[n][c]])) for n in runs}
        paired = float(np.median([k["cpu_us"] / x["cpu_us"] for k, x in zip(runs["kit"][c], runs["release"][c],
                                                                             strict=True)]))
        ratio = res["release"]["rows_s"] / res["kit"]["rows_s"]
        worst["rows"], worst["cpu"] = min(worst["rows"], ratio), min(worst["cpu"], paired)
        errors = sum(res[n]["errors"] for n in res)
        print(f"| {c} | {res['kit']['rows_s']:,.0f} | {res['bare']['rows_s']:,.0f} | {res['release']['rows_s']:,.0f} | "
              f"{ratio:.2f} | {res['release']['rows_s'] / res['bare']['rows_s']:.2f} | "
              f"{cpu['kit']:.0f} / {cpu['bare']:.0f} / {cpu['release']:.0f} | {1 / paired:.2f} | "
              f"{res['kit']['p99']:.1f} / {res['release']['p99']:.1f} | {errors} |")
    print(f"\nworst throughput ratio release / kit: {worst['rows']:.2f}; worst kit / release server CPU per request "
          f"(median of paired rounds): {worst['cpu']:.2f} -> goal (release costs <= 10 %): "
          f"{'met' if worst['rows'] >= 0.9 else 'NOT met'} by throughput, "
          f"{'met' if worst['cpu'] >= 0.9 else 'NOT met'} by server CPU")
    if "log" in runs:  # --parts: what each part adds to kit's server CPU per request (medians of paired rounds)
        print("\n| concurrency | server CPU us/request added to kit's: bare (ids, header) | canary (no log) "
              "| log (one version) | release (all) |")
        print("|---|---|---|---|---|")
        for c in levels:
            added = {n: float(np.median([x["cpu_us"] - k["cpu_us"] for k, x in zip(runs["kit"][c], runs[n][c],
                                                                                   strict=True)]))
                     for n in ("bare", "canary", "log", "release")}
            print(f"| {c} | {added['bare']:+.1f} | {added['canary']:+.1f} | {added['log']:+.1f} | "
                  f"{added['release']:+.1f} |")
    return worst["rows"] >= 0.9


def _cpu(proc: Any) -> float:
    """User + system CPU seconds of a server's process tree (its workers included)."""
    import psutil

    total = 0.0
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        return 0.0
    for p in tree:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


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
