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
# (dynamic or statically calibrated) or in fp16. `compare()` builds each variant and measures
# accuracy, latency and size side by side; `select()` picks the fastest one whose metric drop stays
# within your budget; `attach()` puts it in the bundle (the ONNX file and its sha256 included).

# %% tags=["parameters"]
bundle_path: str = ""  # a saved bundle to continue from (e.g. 01_data_train's); empty: train one on `data`
data: str = "breast_cancer"  # dataset used when bundle_path is empty

variants: str = ""  # comma-separated variant names (torch-fp32, ort-fp32, ort-int8-dynamic, ...); empty: all
budget: float = 0.005  # accuracy budget: largest accepted drop of the primary metric vs torch fp32
repeats: int = 300  # timed runs per batch size
smoke: bool = False  # fewer timing repeats, for CI
output_dir: str = "../runs/04_quantize"  # where the plot, the chosen bundle and results.json go

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import kit
from kit.train import train

if bundle_path:
    bundle = kit.ModelBundle.load(bundle_path)
    print(f"continuing from {bundle_path}: {bundle!r}")
else:
    train_config = kit.TrainConfig().smoke() if smoke else kit.TrainConfig()
    bundle = train(kit.DataConfig(source=data), train_config, progress=True).bundle
    print(f"trained a fresh model on {data}: {bundle!r}")
data_config = bundle.data_config

# %%
from kit.quantize import attach, compare, select

config = kit.QuantizeConfig(variants=tuple(v.strip() for v in variants.split(",") if v.strip()) or None,
                            budget=budget, repeats=repeats)
config = config.smoke() if smoke else config  # smoke: the tiny CI profile (kit.config.SMOKE)
data = bundle.reload_data()  # the bundle's own split: test rows to measure, training rows to calibrate
X_test, y_test = data.splits.test.X, data.dataset.decode_target(data.splits.test.y)
report = compare(bundle, X_test, y_test, config, calibration=data.splits.train.X)
columns = ["status", "metric", "metric_drop", "label_agreement", "p50_batch1", "p99_batch1", "p50_batch64",
           "size_bytes", "size_ratio"]
report.frame[[c for c in columns if c in report.frame.columns]].round(4)

# %% [markdown]
# ## Latency against accuracy
#
# Each point is a variant (marker area = file size); the dashed line is the Pareto front, the
# variants no other beats on both latency and accuracy.

# %%
Path(output_dir).mkdir(parents=True, exist_ok=True)
fig = report.plot()
fig.savefig(Path(output_dir) / "pareto.png")
display(fig)

# %% [markdown]
# ## Choose within a budget
#
# The fastest variant whose metric drop is at most `budget`; every other variant gets a
# reason. The chosen bundle predicts through the same `predict` path as before.

# %%
choice = select(report)  # within config.budget
print(choice)
chosen = attach(bundle, choice)
test_metrics = chosen.evaluate(X_test, y_test)
agreement = float((chosen.predict(X_test) == bundle.predict(X_test)).mean()) if bundle.task != "regression" else None
print(f"test metrics with {choice.variant}: {test_metrics}; agreement with fp32: {agreement}")

# %%
from kit.results import notebook_results, write_results

bundle_out = chosen.save(Path(output_dir) / "bundle")
write_results(output_dir, notebook_results(
    "04_quantize", bundle=chosen, bundle_path=bundle_out, smoke=smoke,
    metrics={"valid": bundle.metrics.get("valid", {}), "test": test_metrics}, fp32_metrics=bundle.metrics,
    chosen=choice.variant, budget=choice.budget, reasons=choice.reasons, agreement_with_fp32=agreement,
    variants=report.variants(), artifacts={"pareto_plot": str((Path(output_dir) / "pareto.png").resolve())},
    tags={"variant": choice.variant, "runtime": chosen.runtime_info["name"]},
))
