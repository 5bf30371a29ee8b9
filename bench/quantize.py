"""Quantized runtimes vs eager torch fp32, measured in one run.

Two breast_cancer models: the default MLP (30-128-64-2) and a wider 3x512 MLP. For each, every
variant (torch-fp32, ort-fp32, ort-int8-dynamic, ort-int8-static calibrated on the train split,
ort-fp16) is measured by kit.quantize.compare on the test split with one intra-op thread
(the batch-1 serving default): p50/p99 latency of runtime.run at batch 1 and 64, artifact size,
test accuracy. Ratios are against torch-fp32 measured in the same run.

Goals (int8): >= 4x faster than torch fp32 at batch 1, >= 3x at batch 64, >= 3.5x smaller than
the fp32 safetensors, metric drop <= 0.5 point. Timings on a shared machine are noisy; p50 is
the figure to read.
"""

from __future__ import annotations

import argparse

import pandas as pd

import kit
from kit.quantize import compare, select
from kit.train import train

MODELS = {"default 30-128-64-2": (128, 64), "wide 30-512x3-2": (512, 512, 512)}


def run(hidden: tuple[int, ...], epochs: int, repeats: int) -> pd.DataFrame:
    bundle = train("breast_cancer", kit.TrainConfig(hidden=hidden, epochs=epochs, patience=15, seed=0)).bundle
    report = compare(bundle, threads=1, repeats=repeats, warmup=100)  # its own test split; training rows calibrate
    print(f"chosen within 0.005: {select(report, 0.005).variant}")
    frame = report.frame
    base = frame.loc["torch-fp32"]
    return pd.DataFrame({
        "accuracy": frame["metric"],
        "drop_pts": 100 * frame["metric_drop"],
        "agree": frame["label_agreement"],
        "p50_b1_us": frame["p50_batch1"],
        "p99_b1_us": frame["p99_batch1"],
        "p50_b64_us": frame["p50_batch64"],
        "p99_b64_us": frame["p99_batch64"],
        "speedup_b1": base["p50_batch1"] / frame["p50_batch1"],
        "speedup_b64": base["p50_batch64"] / frame["p50_batch64"],
        "size_kb": frame["size_bytes"] / 1024,
        "smaller": frame["size_ratio"],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    for label, hidden in MODELS.items():
        print(f"\n== {label} ==")
        table = run(hidden, args.epochs, args.repeats)
        print(table.to_string(float_format=lambda v: f"{v:.3g}"))
        int8 = table.loc["ort-int8-dynamic"]
        print(f"int8-dynamic vs torch fp32: {int8['speedup_b1']:.1f}x at batch 1 (goal >= 4), "
              f"{int8['speedup_b64']:.1f}x at batch 64 (goal >= 3), {int8['smaller']:.2f}x smaller (goal >= 3.5), "
              f"drop {int8['drop_pts']:+.2f} points (goal <= 0.5)")


if __name__ == "__main__":
    main()
