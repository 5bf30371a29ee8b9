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
# within your budget; `with_runtime()` puts it in the bundle (the ONNX file and its sha256 included).

# %% tags=["parameters"]
bundle_path: str = ""  # a saved bundle to continue from (e.g. 01_data_train's); empty: train one on `data`
data: str = "breast_cancer"  # dataset used when bundle_path is empty

variants: str = ""  # comma-separated variant names (torch-fp32, ort-fp32, ort-int8-dynamic, ...); empty: all
max_metric_drop: float = 0.005  # accuracy budget: largest accepted drop of the primary metric vs torch fp32
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
    data_config = kit.DataConfig.from_dict(bundle.configs["data"])
    print(f"continuing from {bundle_path}: {bundle!r}")
else:
    data_config = kit.DataConfig(source=data)
    bundle = train(data_config, kit.TrainConfig(epochs=15 if smoke else 200)).bundle
    print(f"trained a fresh model on {data}: {bundle!r}")

# %%
from kit.quantize import compare, evaluation_rows, select

X_test, y_test, X_train = evaluation_rows(bundle)
names = [v.strip() for v in variants.split(",") if v.strip()] or None
n = 20 if smoke else repeats
report = compare(bundle, X_test, y_test, names, calibration=X_train, repeats=n, warmup=max(1, n // 10))
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
# The fastest variant whose metric drop is at most `max_metric_drop`; every other variant gets a
# reason. The chosen bundle predicts through the same `predict` path as before.

# %%
choice = select(report, max_metric_drop=max_metric_drop)
print(choice)
chosen = bundle.with_runtime(choice)
test_metrics = chosen.evaluate(X_test, y_test)
agreement = float((chosen.predict(X_test) == bundle.predict(X_test)).mean()) if bundle.task != "regression" else None
print(f"test metrics with {choice.variant}: {test_metrics}; agreement with fp32: {agreement}")

# %%
from kit.ui import write_results

bundle_out = chosen.save(Path(output_dir) / "bundle")
write_results(output_dir, {
    "notebook": "04_quantize", "smoke": smoke, "task": chosen.task, "primary_metric": chosen.primary_metric,
    "metrics": {"valid": bundle.metrics.get("valid", {}), "test": test_metrics}, "fp32_metrics": bundle.metrics,
    "chosen": choice.variant, "reasons": choice.reasons, "agreement_with_fp32": agreement,
    "variants": report.summary()["variants"], "bundle_path": str(bundle_out.resolve()),
    "artifacts": {"bundle": str(bundle_out.resolve()),
                  "pareto_plot": str((Path(output_dir) / "pareto.png").resolve())},
    "tags": {"variant": choice.variant, "runtime": chosen.runtime_info["name"]},
})
