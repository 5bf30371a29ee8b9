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
# # 01 · Data and training
#
# Load a table, look at it, split it, and train a small PyTorch network on it. Everything here is
# one `kit` call per step; the notebook only shows what comes back. The trained model is saved as a
# **bundle** (preprocessor + weights + schema + metrics + configs), which every later notebook can
# start from (`bundle_path`).

# %% tags=["parameters"]
data: str = "breast_cancer"  # built-in dataset (breast_cancer, wine, digits, diabetes) or a CSV/Parquet path
target: str = ""  # target column; needed for files, empty for built-ins
task: str = "auto"  # auto, binary, multiclass or regression
hidden: str = "128,64"  # hidden layer widths, comma separated
lr: float = 0.001  # peak learning rate (AdamW, warm-up + cosine)
epochs: int = 200  # maximum epochs; early stopping keeps the best
seed: int = 0  # training seed: same seed, same metrics
smoke: bool = False  # tiny epochs, for CI
output_dir: str = "../runs/01_data_train"  # where the bundle and results.json are written

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt

import kit
from kit.train import train

data_config = kit.DataConfig(source=data, target=target or None, task=task)
ds = kit.load(data_config)
ds.summary()

# %% [markdown]
# ## The target
#
# Before training, look at what is predicted: the class balance for a classifier (a very
# unbalanced target makes accuracy misleading), the distribution for a regression.

# %%
fig, ax = plt.subplots(figsize=(5, 3))
if ds.task == "regression":
    ax.hist(ds.frame[ds.target], bins=30)
else:
    ds.frame[ds.target].value_counts().plot.bar(ax=ax)
ax.set_title(f"{ds.name}: {ds.target}")
plt.show()

# %% [markdown]
# ## Split and train
#
# `train()` fits the preprocessor on the training split only (no leakage), trains with early
# stopping on the validation split and reports metrics on the untouched test split, next to a
# logistic (or ridge) regression and HistGradientBoosting fitted on the same split. The network is
# kit's built-in `mlp`; `TrainConfig(net=...)` takes `resmlp`, `ft_transformer` or your own
# PyTorch builder — `06_custom_network` walks through writing one.

# %%
config = kit.TrainConfig(hidden=tuple(int(h) for h in hidden.split(",")), lr=lr, epochs=epochs, seed=seed)
config = config.smoke() if smoke else config  # smoke: the tiny CI profile (kit.config.SMOKE)
splits = ds.split(data_config.valid_size, data_config.test_size, data_config.seed)
print(f"train {len(splits.train)} / valid {len(splits.valid)} / test {len(splits.test)} rows")
result = train(ds, config, data_config=data_config, splits=splits, progress=True)
print(f"best epoch {result.best_epoch} of {len(result.history)} ({result.stopped})")

# %%
hist = result.history
monitor = [k for k in hist[0] if k not in ("epoch", "train_loss", "valid_loss", "lr", "elapsed")][0]
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3))
a1.plot([h["epoch"] for h in hist], [h["train_loss"] for h in hist], label="train loss")
a1.plot([h["epoch"] for h in hist], [h["valid_loss"] for h in hist], label="valid loss")
a1.axvline(result.best_epoch, color="gray", ls=":", label="best epoch")
a1.legend()
a2.plot([h["epoch"] for h in hist], [h[monitor] for h in hist], color="C3")
a2.set_title(f"valid {monitor}")
plt.show()

# %% [markdown]
# ## Metrics and predictions
#
# Metrics come from the bundle itself, through the same `predict` path the HTTP service uses.

# %%
import pandas as pd

bundle = result.bundle
display(pd.DataFrame(bundle.metrics).round(4))
display(result.baselines)  # the network next to logistic/ridge regression and HistGradientBoosting, same split
bundle.infer(splits.test.X.head(5)).to_frame()

# %% [markdown]
# ## Save the bundle
#
# The bundle directory is all a later step needs: `02_tune`, `03_explain`, `04_quantize` and
# `05_package_serve` take it as `bundle_path`.

# %%
from kit.results import notebook_results, write_results

bundle_path = bundle.save(Path(output_dir) / "bundle")
written = write_results(output_dir, notebook_results(
    "01_data_train", bundle=bundle, bundle_path=bundle_path, smoke=smoke,
    tags={"data_hash": bundle.lineage["data_hash"]},
    steps={"train": {"best_epoch": result.best_epoch, "epochs_run": len(result.history), "stopped": result.stopped}},
))
print(written)
