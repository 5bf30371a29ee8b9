"""The compression frontier (#17): pruned, distilled and int8 candidates vs ONNX Runtime fp32 of the original.

Two wide networks: breast_cancer 30-512x3-2 and digits 64-512x3-10. Each is trained, then
``kit.quantize.compress`` searches the default schedule (prune 50/75/90/95 % of hidden units with a
fine-tune after each step, students of hidden [128], [64] and [32] distilled from the original and
each pruned by 50 % after, the accuracy-aware static int8 search on every network) with one
intra-op thread and chooses under a 0.5-point budget. Every candidate is timed in the same
interleaved rounds, so the ratios below compare runs that saw the same machine. Ratios are against
the original network on ONNX Runtime fp32.

Goals: the chosen candidate >= 4x faster at batch 64 and >= 2x at batch 1, >= 10x smaller, metric
drop <= 0.5 point on the test split, found in <= 5 minutes. The load average before and after
each search is printed: a busy machine makes every candidate slower alike, but noisier.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import kit
from kit.quantize import compress
from kit.train import train

MODELS = {"breast_cancer 30-512x3-2": "breast_cancer", "digits 64-512x3-10": "digits"}


def run(data: str, epochs: int, repeats: int, plot: Path | None) -> dict[str, float]:
    bundle = train(data, kit.TrainConfig(hidden=(512, 512, 512), dropout=0.1, epochs=epochs, patience=10,
                                         seed=0)).bundle
    print(f"original test metrics: {bundle.metrics['test']}")
    print(f"load average before: {os.getloadavg()}")
    start = time.perf_counter()
    result = compress(bundle, budget=0.005, repeats=repeats, warmup=50, time_budget=300)
    seconds = time.perf_counter() - start
    print(f"load average after: {os.getloadavg()}")
    report = result.report
    print(report)
    if plot is not None:
        report.plot().savefig(plot, dpi=110, bbox_inches="tight")
        print(f"frontier plot: {plot}")
    base, chosen = report.frame.loc["original/ort-fp32"], report.frame.loc[report.chosen]
    figures = {"seconds": seconds, "speedup_b1": base["p50_batch1"] / chosen["p50_batch1"],
               "speedup_b64": base["p50_batch64"] / chosen["p50_batch64"], "smaller": chosen["size_ratio"],
               "drop_pts": 100 * chosen["test_metric_drop"], "valid_drop_pts": 100 * chosen["metric_drop"]}
    print(f"chosen {report.chosen}: {figures['speedup_b1']:.1f}x at batch 1 (goal >= 2), "
          f"{figures['speedup_b64']:.1f}x at batch 64 (goal >= 4), {figures['smaller']:.0f}x smaller (goal >= 10), "
          f"drop {figures['drop_pts']:+.2f} points on test (goal <= 0.5; chosen on validation: "
          f"{figures['valid_drop_pts']:+.2f}), found in {seconds:.0f} s (goal <= 300)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--plot-dir", type=Path, help="write each frontier plot here (compress_<data>.png)")
    args = parser.parse_args()
    for label, data in MODELS.items():
        print(f"\n== {label} ==")
        plot = args.plot_dir / f"compress_{data}.png" if args.plot_dir else None
        run(data, args.epochs, args.repeats, plot)


if __name__ == "__main__":
    main()
