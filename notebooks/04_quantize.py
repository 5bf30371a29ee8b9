# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Quantization and runtimes
#
# The same network can run as eager PyTorch, as an ONNX graph on ONNX Runtime, with int8 weights
# (dynamic, or statically calibrated on training rows) or in fp16. `compare()` builds each variant
# and measures accuracy, latency and size side by side; `select()` picks the fastest one whose
# metric drop stays within your budget; `attach()` puts it in the bundle (the ONNX file and its
# sha256 included), and the service will then predict with it.
#
# **How long:** about 15 seconds on breast_cancer on a 2-core CPU with the defaults (300 timed runs
# per variant and batch size; `smoke=True` times 50); add about 10 seconds when the notebook trains
# its own model, and about a minute for the search of smaller networks at the end (`frontier`;
# about 15 seconds with `smoke=True`).

# %% tags=["parameters"]
# Where to start: a saved bundle, or data to train a new model on
bundle_path: str = ""  # a saved bundle (e.g. runs/01_data_train/bundle); empty: train a new model on `data`
data: str = "breast_cancer"  # used when bundle_path is empty: a built-in dataset or a CSV/Parquet path
target: str = ""  # target column of a CSV/Parquet `data`; empty for built-ins
# The comparison
variants: str = ""  # comma-separated variant names (torch-fp32, ort-fp32, ort-int8-dynamic, ...); empty: all
budget: float = 0.005  # accuracy budget: largest accepted drop of the primary metric vs torch fp32
repeats: int = 300  # timed runs per variant and batch size
frontier: bool = True  # also search smaller networks (pruned, distilled, int8: kit.quantize.compress)
# The run
smoke: bool = False  # tiny settings (kit.config.SMOKE: 50 timed runs), for CI
output_dir: str = ""  # where plots, the chosen bundle and results.json go; empty: runs/04_quantize in the project

# %% [markdown]
# ## The model to start from
#
# `load_or_train()` returns the bundle saved at `bundle_path` (what an earlier notebook wrote;
# `kit run` passes it along), or, when `bundle_path` is empty, trains a new model on `data` so
# this notebook also runs on its own. Its torch fp32 weights are the reference every variant is
# compared with.

# %%
# %matplotlib inline
import pandas as pd

import kit
from kit.notebook import load_or_train, output_folder
from kit.quantize import attach, compare, latency_by_batch, select

output_dir = output_folder(output_dir, "04_quantize")
bundle = load_or_train(bundle_path, data, target, smoke=smoke)

# %% [markdown]
# ## Measure every variant
#
# Every variant predicts the bundle's own test split (its metric, and how often its label equals
# torch fp32's) and is timed in interleaved rounds, so a busy moment of the machine hits all of them
# alike. Latencies are microseconds (µs) per call of the runtime on preprocessed rows, after a
# warm-up, with one thread: **batch 1** is one request, **batch 64** a batch of 64 rows. Static
# int8 calibrates its activation ranges on training rows.

# %%
config = kit.QuantizeConfig(variants=tuple(v.strip() for v in variants.split(",") if v.strip()) or None,
                            budget=budget, repeats=repeats)
config = config.smoke_if(smoke)  # smoke=True: the CI profile kit.config.SMOKE (50 timed runs)
own = bundle.reload_data()  # the bundle's own split: test rows to measure, training rows to calibrate
X_test, y_test = own.splits.test.X, own.dataset.decode_target(own.splits.test.y)
report = compare(bundle, X_test, y_test, config, calibration=own.splits.train.X)
report.summary().round(4)

# %% [markdown]
# ## Latency against accuracy
#
# Each point is a variant (marker area = file size); the dashed line is the Pareto front, the
# variants that no other beats on both latency and accuracy.

# %%
pareto_plot = output_dir / "pareto.png"
fig = report.plot()
fig.savefig(pareto_plot)
display(fig)

# %% [markdown]
# ## Latency by batch size
#
# A call has a fixed cost (entering the runtime) plus a cost per row, so larger batches serve many
# more rows per second at the price of a longer call. Left: the p50 latency of one call; right:
# rows per second. This is what the service's adaptive batching trades when it groups concurrent
# requests.

# %%
by_batch = latency_by_batch(bundle, report, X_test)
batch_plot = output_dir / "latency_by_batch.png"
fig = by_batch.plot()
fig.savefig(batch_plot)
display(fig)
by_batch.frame.pivot(index="batch", columns="variant", values="p50_us").round(1).rename_axis(
    columns="p50 latency per call (µs)")

# %% [markdown]
# ## Choose within a budget
#
# `select()` takes the fastest variant (by p50 latency at batch 1) whose metric drop versus torch
# fp32 is at most `budget`; every variant it passed over gets a reason.

# %%
choice = select(report)  # within config.budget
chosen = attach(bundle, choice)
print(choice)

# %% [markdown]
# ## Does the chosen variant predict like fp32?
#
# The chosen bundle predicts through the same `infer` path as before. Side by side on the first
# test rows: the true label, torch fp32's prediction and the chosen variant's. Below, the test
# metrics of the chosen variant and, for a classifier, the share of test rows where both give the
# same label (for a regression, the largest difference between their predictions).

# %%
fp32 = bundle.infer(X_test).to_frame()
quantized = chosen.infer(X_test).to_frame()
side_by_side = pd.DataFrame({"true": y_test, "torch-fp32": fp32["prediction"], choice.variant: quantized["prediction"]})
display(side_by_side.head(8))
test_metrics = chosen.evaluate(X_test, y_test)
print(f"test metrics with {choice.variant}: " + ", ".join(f"{k} {v:.4f}" for k, v in test_metrics.items()))
if bundle.task == "regression":
    agreement = None
    print(f"largest difference from torch fp32: {(quantized['prediction'] - fp32['prediction']).abs().max():.4g}")
else:
    agreement = float((quantized["prediction"] == fp32["prediction"]).mean())
    print(f"same label as torch fp32 on {agreement:.1%} of {len(X_test)} test rows")

# %% [markdown]
# ## Smaller networks: the compression frontier
#
# Quantizing keeps the network and changes how it runs. `compress()` also changes the network:
# it removes whole hidden units by importance (structured pruning, a short fine-tune after each
# step), trains narrower students on this network's soft outputs and the labels (distillation),
# and searches static int8 for each (calibration method, per-channel weights, fp32 fallback for
# the layers that cost accuracy). Every candidate is measured on the same rows: the fastest within
# the budget on the **validation** split is chosen (`metric_drop`), and its drop on the **test**
# split (`test_metric_drop`), which nothing was chosen on, is the honest figure to report; with
# dozens of candidates, choosing on the test rows would pick one that got lucky there. Each
# candidate says how it was made (its lineage). When nothing
# smaller meets the budget, the original stays, with the reason. `kit compress` does the same
# from a shell. The bundle saved below stays the quantized one; the frontier's choice is saved
# beside it (`compressed_bundle`).

# %%
from kit.config import CompressConfig
from kit.quantize import compress

compressed = None
frontier_plot = output_dir / "frontier.png"
if frontier:
    compressed = compress(bundle, CompressConfig(budget=budget).smoke_if(smoke))
    frontier_report = compressed.report
    display(frontier_report.frame[["metric_drop", "test_metric_drop", "p50_batch1", "p50_batch64", "size_bytes",
                                   "size_ratio", "parameters"]].round(4))
    print(compressed.reason)
    print("lineage: " + " -> ".join(frontier_report.lineage()))
    fig = frontier_report.plot()
    fig.savefig(frontier_plot)
    display(fig)

# %% [markdown]
# ## Save
#
# The chosen bundle carries its runtime, the ONNX graph and the quantization summary (budget,
# metric drop, reasons); `05_package_serve` packages it as it is.

# %%
from kit.results import notebook_results, write_results

bundle_out = chosen.save(output_dir / "bundle")
frontier_results = None
if compressed is not None:
    frontier_results = {**compressed.report.to_json(), "reason": compressed.reason,
                        "bundle_path": str(compressed.bundle.save(output_dir / "compressed_bundle"))}
written = write_results(output_dir, notebook_results(
    "04_quantize", bundle=chosen, bundle_path=bundle_out, smoke=smoke,
    metrics={"valid": bundle.metrics.get("valid", {}), "test": test_metrics}, fp32_metrics=bundle.metrics,
    chosen=choice.variant, budget=choice.budget, reasons=choice.reasons, agreement_with_fp32=agreement,
    variants=report.variants(), latency_by_batch=by_batch.frame.to_dict("records"),
    frontier=frontier_results,
    artifacts={"pareto_plot": pareto_plot, "latency_by_batch_plot": batch_plot,
               **({"frontier_plot": frontier_plot} if compressed is not None else {})},
    tags={"variant": choice.variant, "runtime": chosen.runtime_info["name"]},
))
print(f"bundle with {choice.variant}: {bundle_out}\nresults: {written}")
