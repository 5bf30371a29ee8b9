"""Batch scoring benchmark: single-process `kit predict` vs Spark `local[2]`, and Spark's local[1] → local[2] scaling.

Same machine, same run, same bundle (breast_cancer on ONNX Runtime fp32, one intra-op thread per
scoring process), same input: 1,000,000 breast-cancer rows resampled with 5% multiplicative
noise, one Parquet file in 50,000-row groups. Each engine runs as a `kit predict` subprocess; a
sampler sums the RSS of its whole process tree (driver, JVM, Python workers) every 0.1 s for the
peak. Spark reads the file in 32 MB splits (8 tasks) so both local[1] and local[2] get even work.

Printed per run: wall time (process start to exit: Spark includes starting its JVM and Python
workers), scoring time (Spark: the part's job as recorded in `_kit_parts/`), rows/s of each,
and peak memory. Rounds interleave the engines. Also: the single-process peak on 250k vs 1M rows
(streaming: flat in rows).

Run: .venv/bin/python bench/batch.py [--rows 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_bundle(folder: Path) -> Path:
    import kit
    from kit import quantize
    from kit.train import train

    result = train("breast_cancer", kit.TrainConfig(epochs=40, patience=10, seed=0))
    path = folder / "bundle"
    quantize.attach(result.bundle, "ort-fp32").save(path)
    return path


def make_rows(folder: Path, n: int, name: str) -> Path:
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    X = load_breast_cancer(as_frame=True).data
    rng = np.random.default_rng(0)
    rows = X.iloc[rng.integers(0, len(X), n)].reset_index(drop=True) * rng.normal(1.0, 0.05, (n, X.shape[1]))
    path = folder / name
    pd.DataFrame(rows).assign(id=np.arange(n)).to_parquet(path, row_group_size=50_000)
    return path


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of the whole process tree of ``cmd``."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode()[-3000:]}")
    return wall, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    kit_cmd = [sys.executable, "-m", "kit.cli", "predict"]
    work = Path(tempfile.mkdtemp(prefix="kit-bench-batch-"))
    try:
        print(f"load average before: {os.getloadavg()}")
        bundle = make_bundle(work)
        src = make_rows(work, args.rows, "rows.parquet")
        small = make_rows(work, args.rows // 4, "quarter.parquet")
        results: dict[str, list[tuple[float, float, float]]] = {}
        for r in range(args.rounds):
            for name in ("local", "spark local[1]", "spark local[2]"):
                if name == "local":
                    wall, peak = run([*kit_cmd, "--bundle", str(bundle), str(src), str(work / "out.parquet"), "-q"])
                    scoring = wall
                else:
                    master = name.split()[1]
                    out = work / "out-spark"
                    wall, peak = run([*kit_cmd, "--engine", "spark", "--master", master, "--bundle", str(bundle),
                                      str(src), str(out), "--overwrite", "-q",
                                      "--conf", "spark.sql.files.maxPartitionBytes=32m"])
                    scoring = sum(json.loads(p.read_text())["seconds"] for p in (out / "_kit_parts").glob("*.json"))
                results.setdefault(name, []).append((wall, scoring, peak))
                print(f"round {r + 1} {name:15s} wall {wall:6.1f}s  scoring {scoring:6.1f}s  "
                      f"{args.rows / scoring:9,.0f} rows/s  peak {peak:7.0f} MiB  load {os.getloadavg()[0]:.2f}",
                      flush=True)
        _, quarter_peak = run([*kit_cmd, "--bundle", str(bundle), str(small), str(work / "q.parquet"), "-q"])
        best = {k: min(v, key=lambda t: t[1]) for k, v in results.items()}
        print("\nbest of rounds (by scoring time):")
        for name, (wall, scoring, peak) in best.items():
            print(f"  {name:15s} {args.rows / scoring:9,.0f} rows/s scoring, {args.rows / wall:9,.0f} rows/s "
                  f"end to end, peak {peak:.0f} MiB")
        ratio = best["spark local[1]"][1] / best["spark local[2]"][1]
        print(f"  spark scaling local[1] -> local[2]: {ratio:.2f}x (scoring time; goal >= 1.7x)")
        print(f"  spark local[2] vs single process: {best['local'][1] / best['spark local[2]'][1]:.2f}x scoring, "
              f"{best['local'][0] / best['spark local[2]'][0]:.2f}x end to end")
        print(f"  single-process peak: {quarter_peak:.0f} MiB on {args.rows // 4:,} rows, "
              f"{best['local'][2]:.0f} MiB on {args.rows:,} rows (streaming: flat in rows)")
        print(f"load average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
