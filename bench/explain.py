"""kit.explain auto (batched DeepExplainer) vs shap's KernelExplainer, same rows, same background.

breast_cancer, a 30-128-64-2 MLP, 200 rows (a seeded sample of the whole table: the test split
alone has fewer), a background of 100 training rows shared by both sides, the log-odds of the
positive class explained. Kernel runs with its default budget (2 * 30 + 2048 coalitions per row)
and no feature selection (l1_reg=False), through ``bundle.infer``.

Prints both wall times, the ratio kernel / auto (goal >= 100x), the max additivity error of each
(goal <= 1e-4 for auto) and how closely the two agree.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import kit
from kit.explain import explain, make_background
from kit.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--background", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--kernel-nsamples", type=int, default=None, help="default: 2 * features + 2048")
    args = parser.parse_args()

    result = train("breast_cancer", kit.TrainConfig(epochs=args.epochs, seed=0))
    bundle, splits = result.bundle, result.splits
    table = kit.load("breast_cancer").X
    rows = table.iloc[np.sort(np.random.default_rng(0).choice(len(table), args.rows, replace=False))]
    background = make_background(bundle, splits.train.X, size=args.background, seed=0)
    explain(bundle, rows.iloc[:2], background=background)  # warm-up: imports shap, builds the network

    timings = {}
    results = {}
    for name, method in (("auto", "auto"), ("kernel", "kernel")):
        start = time.perf_counter()
        results[name] = explain(bundle, rows, background=background, method=method, nsamples=(
            args.kernel_nsamples if method == "kernel" else None))
        timings[name] = time.perf_counter() - start

    auto, kern = results["auto"], results["kernel"]
    print(f"explain {len(rows)} rows x {len(bundle.feature_names)} features, background {len(background)} rows, "
          f"output: {auto.output}")
    print(f"{'method':<30}{'seconds':>10}{'ms/row':>10}{'max additivity error':>24}")
    for label, name in ((f"auto -> {auto.method}", "auto"), ("kernel (shap KernelExplainer)", "kernel")):
        seconds = timings[name]
        print(f"{label:<30}{seconds:>10.3f}{1000 * seconds / len(rows):>10.2f}"
              f"{results[name].additivity_error:>24.2e}")
    ratio = timings["kernel"] / timings["auto"]
    print(f"ratio kernel / auto: {ratio:.0f}x (goal >= 100x): {'met' if ratio >= 100 else 'NOT met'}")
    print(f"auto max additivity error {auto.additivity_error:.2e} (goal <= 1e-4): "
          f"{'met' if auto.additivity_error <= 1e-4 else 'NOT met'}")
    corr = np.corrcoef(auto.values.ravel(), kern.values.ravel())[0, 1]
    rel = np.abs(auto.values - kern.values).sum() / np.abs(kern.values).sum()
    top_a, top_k = auto.importance()["feature"].head(5), kern.importance()["feature"].head(5)
    print(f"agreement: correlation {corr:.4f}, relative L1 difference {rel:.3f}, "
          f"top-5 overlap {len(set(top_a) & set(top_k))}/5")


if __name__ == "__main__":
    main()
