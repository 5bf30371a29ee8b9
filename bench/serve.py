"""Serving benchmark: the kit service against hand-written apps with the same resources, in one run.

Every server runs on this machine on 127.0.0.1 with the same number of processes (one per CPU):

  floor        a bare ASGI app (uvicorn, no framework) that parses the JSON body and writes a canned
               answer of the same shape: the HTTP floor of this machine
  hand         what a user writes by hand on kit's bundle: FastAPI + pydantic rows -> ``bundle.infer``
               -> records, on the same bundle and runtime (ONNX Runtime, ``--variant``)
  hand+auth    the same with a bearer-token check (hmac.compare_digest), against kit with KIT_API_KEY
  hand-torch   FastAPI + torch fp32 eager per request (the earlier README baseline)
  kit          ``bentoml serve bentos`` with kit's defaults (one worker per CPU, drift window on)
  kit+auth     the same with KIT_API_KEY
  kit-nodrift  the same with the drift window off (KIT_DRIFT_WINDOW=0), to show what the window costs
  kit-bentoml  the same with KIT_FAST_PATH=0: /predict through BentoML's own handler and batcher
  *-mixed      hand and kit on a mixed-type model (numeric + text columns + missing values)

Baselines run as separate uvicorn processes on their own ports, the client spreading its connections
over them (``uvicorn --workers N`` puts a ~44 ms delayed-ACK floor under every request here); kit runs
as ``bentoml serve`` with its workers sharing one port. A closed-loop client (raw asyncio HTTP/1.1
keep-alive, one row per request) drives every server at concurrency 1, 8, 32 and 64; the servers run
side by side and are measured in interleaved rounds, so a drift of the machine's speed hits them alike.
Printed: rows/s, p50, p99, errors per level; ratios kit / hand and kit / floor; the goals.

Run: .venv/bin/python bench/serve.py [--seconds 5] [--rounds 2] [--variant ort-int8-dynamic]
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LEVELS = (1, 8, 32, 64)
API_KEY = "bench-key-0123456789abcdef"
RUNS: dict[str, tuple[str, str]] = {  # kit run -> (its baseline, the data) for the goal checks
    "kit": ("hand", "bc"), "kit+auth": ("hand+auth", "bc"), "kit-nodrift": ("hand", "bc"),
    "kit-mixed": ("hand-mixed", "mixed"),
}


class Rows(BaseModel):
    """The hand-written request model."""

    rows: list[dict[str, float | str | None]]


# -- the baseline apps (each served by `python bench/serve.py --app KIND --bundle DIR --port P`) --------------
def hand_app(bundle_dir: str, api_key: str | None = None) -> Any:
    """What users write by hand on kit's bundle: pydantic rows -> ``bundle.infer`` -> records, per request."""
    from fastapi import FastAPI, Header, HTTPException

    from kit.bundle import ModelBundle

    bundle = ModelBundle.load(bundle_dir)
    bundle.infer(bundle.example(2))
    app = FastAPI()
    expected = f"Bearer {api_key}".encode()

    @app.post("/predict")
    def predict(body: Rows, authorization: str = Header("")) -> list[dict[str, Any]]:
        if api_key and not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, "bad key")
        return bundle.infer(body.rows).records()

    return app


def torch_app(bundle_dir: str) -> Any:
    """The earlier baseline: pydantic rows -> DataFrame -> preprocess -> torch fp32 eager -> softmax."""
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


def floor_app(bundle_dir: str) -> Any:
    """The HTTP floor: read the body, parse it (orjson), answer a canned record per row. No framework."""
    import orjson

    from kit.bundle import ModelBundle

    bundle = ModelBundle.load(bundle_dir)
    answer = bundle.infer(bundle.example(1)).records()[0]

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        data = orjson.dumps([answer] * len(orjson.loads(body)["rows"]))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    return app


APPS: dict[str, Callable[..., Any]] = {"hand": hand_app, "hand+auth": lambda d: hand_app(d, API_KEY),
                                       "hand-torch": torch_app, "floor": floor_app}


# -- the client ---------------------------------------------------------------------------------------------
async def load(ports: list[int], rows: list[dict[str, Any]], concurrency: int, seconds: float,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Closed loop: ``concurrency`` keep-alive connections (connection i to ``ports[i % len]``), one row each.

    A lean HTTP/1.1 client on raw asyncio streams (pre-encoded requests, Content-Length framing), so that
    the load generator, which shares this machine's cores with the servers, costs little per request.
    """
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    bodies = [json.dumps({"rows": [r]}).encode() for r in rows]
    requests = [(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}"
                 f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal errors
        port = ports[i % len(ports)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = i
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    writer.write(requests[n % len(requests)])
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:"))
                    await reader.readexactly(length)
                    ok = head[9:12] == b"200"
                except (TimeoutError, OSError, asyncio.IncompleteReadError, StopIteration, ValueError):
                    ok = False
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
                n += concurrency
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return {"n": len(latencies), "seconds": time.perf_counter() - start, "latencies": latencies, "errors": errors}


def summary(parts: list[dict[str, Any]]) -> dict[str, float]:
    """Rows/s, p50, p99 (ms) and errors pooled over rounds."""
    lat = np.array([x for p in parts for x in p["latencies"]]) * 1000
    if not len(lat):
        lat = np.array([math.nan])
    return {"rows_s": sum(p["n"] for p in parts) / sum(p["seconds"] for p in parts),
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "errors": sum(p["errors"] for p in parts)}


# -- servers ------------------------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Servers:
    """Every server of the run: name -> (ports, processes, data, headers)."""

    def __init__(self, tmp: Path, processes: int) -> None:
        self.tmp, self.processes = tmp, processes
        self.ports: dict[str, list[int]] = {}
        self.data: dict[str, str] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.procs: list[subprocess.Popen[bytes]] = []

    def baseline(self, name: str, app: str, bundle_dir: Path, data: str) -> None:
        ports = [free_port() for _ in range(self.processes)]
        for port in ports:
            with open(self.tmp / f"{name}-{port}.log", "wb") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, __file__, "--app", app, "--bundle", str(bundle_dir), "--port", str(port)],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        self.ports[name], self.data[name] = ports, data
        self.headers[name] = {"Authorization": f"Bearer {API_KEY}"} if "auth" in name else {}

    def kit(self, name: str, tag: str, data: str, env: dict[str, str]) -> None:
        from kit import package

        port = free_port()
        env = {"KIT_API_KEY": "", **env}
        with open(self.tmp / f"{name}.log", "wb") as log:
            self.procs.append(package.start(tag, port=port, env=env, wait=0, log=log))
        self.ports[name], self.data[name] = [port], data
        self.headers[name] = {"Authorization": f"Bearer {API_KEY}"} if env.get("KIT_API_KEY") else {}

    def wait(self, timeout: float = 240) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        pending = [(p, name.startswith("kit")) for name, ports in self.ports.items() for p in ports]
        while pending and time.monotonic() < deadline:
            if any(proc.poll() is not None for proc in self.procs):
                raise RuntimeError(f"a server exited early; logs in {self.tmp}")
            port, is_kit = pending[0]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    pass
                pending.pop(0)
            except OSError as exc:
                if getattr(exc, "code", None) and not is_kit:  # a baseline has no /readyz, but it answers
                    pending.pop(0)
                else:
                    time.sleep(0.25)
        if pending:
            raise RuntimeError(f"servers on ports {pending} not ready; logs in {self.tmp}")

    def stop(self) -> None:
        from kit import package

        for proc in self.procs:
            package.stop(proc)


# -- the run ------------------------------------------------------------------------------------------------
def mixed_csv(path: Path, n: int = 3000) -> Path:
    """A mixed-type table: six numeric columns, three text columns, missing values, a text target."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(i, 1 + i, n) for i in range(6)})
    frame["color"] = rng.choice(["red", "green", "blue", "black", "white"], n)
    frame["city"] = rng.choice([f"city{i:02d}" for i in range(12)], n)
    frame["plan"] = rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1])
    score = frame["x0"] + (frame["color"] == "red") * 2 - (frame["plan"] == "basic") + rng.normal(0, 1, n)
    frame["label"] = np.where(score > np.median(score), "churn", "stay")
    frame.loc[rng.choice(n, n // 20, replace=False), "x2"] = np.nan
    frame.loc[rng.choice(n, n // 50, replace=False), "city"] = None
    frame.to_csv(path, index=False)
    return path


def records(frame: Any) -> list[dict[str, Any]]:
    """JSON-ready rows: NaN and None become null."""
    return [{k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in r.items()}
            for r in frame.astype(object).to_dict("records")]


def prepare(tmp: Path, variant: str, epochs: int) -> dict[str, Any]:
    """Train, quantize and store the two models; returns tags, bundle folders and request rows."""
    import kit
    from kit import package, quantize
    from kit.train import train

    out: dict[str, Any] = {}
    for data, source in (("bc", "breast_cancer"), ("mixed", kit.DataConfig(source=str(mixed_csv(tmp / "mixed.csv")),
                                                                             target="label"))):
        result = train(source, kit.TrainConfig(epochs=epochs, seed=0))
        served = quantize.attach(result.bundle, variant)
        out[data] = {"tag": package.save(served, f"bench{data}"), "dir": served.save(tmp / f"{data}-served"),
                     "fp32": result.bundle.save(tmp / f"{data}-fp32"), "rows": records(result.splits.test.X),
                     "repr": repr(served)}
    return out


def measure(servers: Servers, rows: dict[str, list[dict[str, Any]]], seconds: float,
            rounds: int) -> dict[str, dict[int, dict[str, float]]]:
    names = list(servers.ports)
    for name in names:  # warm-up: runtimes, caches, connection pools
        asyncio.run(load(servers.ports[name], rows[servers.data[name]], 8, 1.5, servers.headers[name]))
    parts: dict[str, dict[int, list[dict[str, Any]]]] = {n: {c: [] for c in LEVELS} for n in names}
    for r in range(rounds):
        for c in LEVELS:
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                res = asyncio.run(load(servers.ports[name], rows[servers.data[name]], c, seconds,
                                       servers.headers[name]))
                parts[name][c].append(res)
                s = summary([res])
                print(f"  round {r + 1} c={c:<3} {name:12} {s['rows_s']:7.0f} rows/s  p50 {s['p50']:6.1f} ms  "
                      f"p99 {s['p99']:6.1f} ms  errors {s['errors']}", flush=True)
    return {n: {c: summary(parts[n][c]) for c in LEVELS} for n in names}


def report(results: dict[str, dict[int, dict[str, float]]]) -> bool:
    met = True
    for kit_name, (base, data) in RUNS.items():
        if kit_name not in results or base not in results:
            continue
        k, b = results[kit_name], results[base]
        floor = results.get("floor") if data == "bc" else None
        print(f"\n{kit_name} vs {base}\n")
        print(f"| concurrency | {kit_name} rows/s | p50 / p99 ms | {base} rows/s | p50 / p99 ms | "
              f"{kit_name} / {base} |" + (" share of floor |" if floor else ""))
        print("|---|---|---|---|---|---|" + ("---|" if floor else ""))
        for c in LEVELS:
            share = f" {k[c]['rows_s'] / floor[c]['rows_s']:.0%} |" if floor else ""
            print(f"| {c} | {k[c]['rows_s']:,.0f} | {k[c]['p50']:.1f} / {k[c]['p99']:.1f} | {b[c]['rows_s']:,.0f} | "
                  f"{b[c]['p50']:.1f} / {b[c]['p99']:.1f} | {k[c]['rows_s'] / b[c]['rows_s']:.2f}x |{share}")
        fails = [f"c={c}: {k[c]['rows_s'] / b[c]['rows_s']:.2f}x < 2x" for c in (32, 64)
                 if k[c]["rows_s"] < 2 * b[c]["rows_s"]]
        fails += [f"c={c}: {q} {k[c][q]:.1f} > {b[c][q]:.1f} ms" for c in LEVELS for q in ("p50", "p99")
                  if k[c][q] > b[c][q]]
        fails += [f"{n} errors: {results[n][c]['errors']} at c={c}" for n in (kit_name, base) for c in LEVELS
                  if results[n][c]["errors"]]
        met = met and not fails
        print(f"goals (>= 2x rows/s at 32 and 64, p50/p99 no worse at every level, 0 errors): "
              f"{'met' if not fails else 'NOT met: ' + '; '.join(fails)}")
    for name in ("floor", "hand-torch", "kit-bentoml"):
        if name in results:
            print(f"\n{name}: " + ", ".join(f"c={c} {r['rows_s']:,.0f} rows/s p50 {r['p50']:.1f} p99 {r['p99']:.1f}"
                                             f" err {r['errors']}" for c, r in results[name].items()))
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="load time per level and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over every server")
    parser.add_argument("--variant", default="ort-int8-dynamic", help="the runtime variant every server runs")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--only", default="", help="comma-separated server names (default: all)")
    parser.add_argument("--app", help=argparse.SUPPRESS)  # internal: serve one baseline process
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.app:
        import uvicorn

        uvicorn.run(APPS[args.app](args.bundle), host="127.0.0.1", port=args.port, log_level="warning")
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="kit-bench-serve-"))
    os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
    models = prepare(tmp, args.variant, args.epochs)
    from kit.serving import cpu_count

    processes = cpu_count()  # kit's default worker count
    from importlib.util import find_spec

    http = "httptools" if find_spec("httptools") else "h11"
    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    print(f"{processes} CPUs, {processes} processes per server; uvicorn {http} + {loop}; load {os.getloadavg()}; "
          f"{args.seconds:.0f} s per level x {args.rounds} rounds; one row per request")
    for data, m in models.items():
        print(f"{data}: {m['repr']}, {len(m['rows'])} distinct request rows")
    only = set(filter(None, args.only.split(",")))
    servers = Servers(tmp, processes)
    bc, mixed = models["bc"], models["mixed"]
    plan: list[tuple[str, Callable[[], None]]] = [
        ("floor", lambda: servers.baseline("floor", "floor", bc["dir"], "bc")),
        ("hand", lambda: servers.baseline("hand", "hand", bc["dir"], "bc")),
        ("hand+auth", lambda: servers.baseline("hand+auth", "hand+auth", bc["dir"], "bc")),
        ("hand-torch", lambda: servers.baseline("hand-torch", "hand-torch", bc["fp32"], "bc")),
        ("hand-mixed", lambda: servers.baseline("hand-mixed", "hand", mixed["dir"], "mixed")),
        ("kit", lambda: servers.kit("kit", bc["tag"], "bc", {})),
        ("kit+auth", lambda: servers.kit("kit+auth", bc["tag"], "bc", {"KIT_API_KEY": API_KEY})),
        ("kit-nodrift", lambda: servers.kit("kit-nodrift", bc["tag"], "bc", {"KIT_DRIFT_WINDOW": "0"})),
        ("kit-bentoml", lambda: servers.kit("kit-bentoml", bc["tag"], "bc", {"KIT_FAST_PATH": "0"})),
        ("kit-mixed", lambda: servers.kit("kit-mixed", mixed["tag"], "mixed", {})),
    ]
    try:
        for name, start in plan:
            if not only or name in only:
                start()
        servers.wait()
        for name in ("hand", "hand+auth", "hand-mixed"):
            if name in servers.ports:  # separate processes: no uvicorn --workers delayed-ACK floor
                r = summary([asyncio.run(load(servers.ports[name], models[servers.data[name]]["rows"], 1, 1.0,
                                              servers.headers[name]))])
                print(f"{name}: concurrency-1 latency p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms")
        results = measure(servers, {d: m["rows"] for d, m in models.items()}, args.seconds, args.rounds)
    finally:
        servers.stop()
    met = report(results)
    print(f"\nload average after the run: {os.getloadavg()}; every goal {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
