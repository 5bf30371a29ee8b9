"""The image CNN: eager torch fp32 vs ORT fp32 vs ORT int8 static, and HTTP rows/s of base64 PNG requests.

One run: a `cnn` is trained on `digits_images` (8x8 grayscale, or --size to resize), then
kit.quantize.compare measures torch-fp32, ort-fp32 and ort-int8-static (QDQ, calibrated on the
training images) at batch 1 and 64 with one intra-op thread, on the same test images; ratios are
against torch fp32 from the same run. Then the int8 model is served by `bentoml serve` (one worker)
and a client posts the test split as base64 PNG rows, one request at a time, at 1 and 32 rows per
request: rows/s end to end (base64 + PNG decode + checks + model + JSON). Check the load average
that is printed: timings on a shared machine are noisy, p50 is the figure to read.
"""

from __future__ import annotations

import argparse
import base64
import os
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

import kit
from kit import package, quantize
from kit.preprocess import encode_png
from kit.train import train

VARIANTS = ("torch-fp32", "ort-fp32", "ort-int8-static")


def measure(bundle: kit.ModelBundle, repeats: int) -> pd.DataFrame:
    report = quantize.compare(bundle, variants=VARIANTS, threads=1, repeats=repeats, warmup=20)
    frame = report.frame
    base = frame.loc["torch-fp32"]
    return pd.DataFrame({
        "accuracy": frame["metric"], "drop_pts": 100 * frame["metric_drop"],
        "p50_b1_us": frame["p50_batch1"], "p50_b64_us": frame["p50_batch64"],
        "speedup_b1": base["p50_batch1"] / frame["p50_batch1"],
        "speedup_b64": base["p50_batch64"] / frame["p50_batch64"],
        "size_kb": frame["size_bytes"] / 1024,
    })


def http_rows_per_s(bundle: kit.ModelBundle, rows: list[dict[str, str]], sizes: tuple[int, ...], seconds: float
                    ) -> dict[int, float]:
    """Rows/s of one client posting ``size`` base64 PNG rows per request to one served worker, per size."""
    out: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as home:
        os.environ["BENTOML_HOME"] = home  # before bentoml is first used in this process
        tag = package.save(bundle, "bench-images")
        port = package.free_port()
        log = open(Path(home) / "server.log", "wb")  # noqa: SIM115 - closed after the server stops
        proc = package.start(tag, port=port, env={"KIT_WORKERS": "1", "KIT_API_KEY": ""}, wait=180, log=log)
        try:
            url = f"http://127.0.0.1:{port}/predict"
            with httpx.Client(timeout=60) as client:
                for size in sizes:
                    for i in range(20):  # warm up
                        client.post(url, json={"rows": rows[i:i + size]}).raise_for_status()
                    sent, start, i = 0, time.perf_counter(), 0
                    while time.perf_counter() - start < seconds:
                        batch = rows[i:i + size] or rows[:size]
                        client.post(url, json={"rows": batch}).raise_for_status()
                        sent += len(batch)
                        i = (i + size) % len(rows)
                    out[size] = sent / (time.perf_counter() - start)
        finally:
            package.stop(proc)
            log.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--size", type=int, default=0, help="resize the digits to SIZE x SIZE (0: keep 8x8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="HTTP measurement per setting")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    data = kit.DataConfig(source="digits_images", image_size=(args.size, args.size) if args.size else None)
    result = train(data, kit.TrainConfig(net="cnn", epochs=args.epochs, patience=8, seed=0), baselines=False)
    bundle = result.bundle
    print(f"cnn {bundle.net.describe()} on {bundle.net.shape}: test accuracy {bundle.metrics['test']['accuracy']:.4f}")
    table = measure(bundle, args.repeats)
    print(table.to_string(float_format=lambda v: f"{v:.3g}"))
    int8 = table.loc["ort-int8-static"]
    print(f"ort-int8-static vs torch fp32: {int8['speedup_b1']:.1f}x at batch 1, {int8['speedup_b64']:.1f}x at "
          f"batch 64, drop {int8['drop_pts']:+.2f} points")
    served = quantize.attach(bundle, "ort-int8-static")
    rows = [{"image": base64.b64encode(encode_png(p)).decode()} for p in result.splits.test.X["image"]]
    for size, rate in http_rows_per_s(served, rows, (1, 32), args.seconds).items():
        print(f"HTTP /predict, base64 PNG, {size} rows per request, one client, one worker: {rate:,.0f} rows/s")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
