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
# Load a table, look at it, split it, and train a small PyTorch network on it. Each step is one
# `kit` call; the notebook shows what comes back. The trained model is saved as a **bundle**
# (preprocessor + weights + schema + metrics + configs) that every later notebook can start from
# (`bundle_path`).
#
# **How long:** on breast_cancer a full run takes about 20 seconds on a 2-core CPU (early stopping
# ends training after about 60 of the 200 epochs allowed); `smoke=True` (8 epochs) about 10 seconds.
# Larger tables take proportionally longer.
#
# The parameters below are the notebook's settings; change them here, or from the command line
# (`kit run --notebooks 01 -p data wine`, or `papermill -p data wine ...`).

# %% tags=["parameters"]
# The data
data: str = "breast_cancer"  # built-in dataset (breast_cancer, wine, digits, diabetes) or a CSV/Parquet path
target: str = ""  # target column; needed for files, empty for built-ins
task: str = "auto"  # auto, binary, multiclass or regression
# The network and its training
hidden: str = "128,64"  # hidden layer widths, comma separated
lr: float = 0.001  # peak learning rate (AdamW, warm-up + cosine)
epochs: int = 200  # maximum epochs; early stopping keeps the best
seed: int = 0  # training seed: same seed, same metrics
# The run
smoke: bool = False  # tiny settings (kit.config.SMOKE: 8 epochs), for CI
output_dir: str = ""  # where the bundle and results.json go; empty: runs/01_data_train in the project folder

# %% [markdown]
# ## The data
#
# `kit.load()` reads a built-in dataset or your CSV/Parquet file, checks it (a missing target,
# an empty column or text in a numeric column is refused with one clear error) and detects the
# task. The summary lists every column with its type, missing values and range.

# %%
import matplotlib.pyplot as plt
import pandas as pd

import kit
from kit.notebook import output_folder
from kit.train import train

output_dir = output_folder(output_dir, "01_data_train")
data_config = kit.DataConfig(source=data, target=target or None, task=task)
ds = kit.load(data_config)
ds.summary()

# %% [markdown]
# The first rows, as the model will see them (the target is the column `target` names):

# %%
ds.frame.head()

# %% [markdown]
# ## The target
#
# Before training, look at what is predicted: the class balance for a classifier (a very
# unbalanced target makes accuracy misleading), the distribution for a regression.

# %%
fig, ax = plt.subplots(figsize=(5, 3))
if ds.task == "regression":
    ax.hist(ds.frame[ds.target], bins=30)
    ax.set(xlabel=ds.target, ylabel="rows")
else:
    ds.frame[ds.target].value_counts().plot.bar(ax=ax, rot=0)
    ax.set(xlabel=ds.target, ylabel="rows")
ax.set_title(f"{ds.name}: {ds.target}")
plt.show()

# %% [markdown]
# ## Which features tell the target apart?
#
# A quick look before any model: the four numeric features with the strongest univariate link to the
# target (ANOVA F-score: scikit-learn's `f_classif` for classes, `f_regression` for values), drawn
# per class (or against the target for a regression). Features that separate the classes well are
# what the network will lean on; `03_explain` shows which ones it actually uses.

# %%
from sklearn.feature_selection import f_classif, f_regression

numeric = ds.X.select_dtypes("number")
score = f_regression if ds.task == "regression" else f_classif
f_scores = pd.Series(score(numeric.fillna(numeric.median()), ds.y)[0], index=numeric.columns)
top = f_scores.sort_values(ascending=False).index[:4]

fig, axes = plt.subplots(1, len(top), figsize=(3.2 * len(top), 3))
for ax, feature in zip(axes, top, strict=False):
    if ds.task == "regression":
        ax.scatter(ds.frame[feature], ds.frame[ds.target], s=6, alpha=0.5)
        ax.set(xlabel=feature, ylabel=ds.target)
    else:
        for label, rows in ds.frame.groupby(ds.target)[feature]:
            ax.hist(rows, bins=25, alpha=0.5, label=str(label))
        ax.set(xlabel=feature, ylabel="rows")
        ax.legend(title=ds.target, fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Split and train
#
# The rows are split into **train** (fit the network), **valid** (early stopping) and **test**
# (the final metrics, never seen in training); classifiers are split stratified, so each part
# keeps the class balance. `train()` fits the preprocessor (imputation, scaling, one-hot
# encoding) on the training split only, so nothing leaks from the other two. On the same split it
# also fits a logistic (or ridge) regression and HistGradientBoosting: the baselines the network
# is judged against below.
#
# ### The network
#
# `TrainConfig.net` names the network builder; the default, `mlp`, is a multilayer perceptron with
# the `hidden` layer widths above, dropout and ReLU. `TrainConfig(net=...)` also takes `resmlp`,
# `ft_transformer` or your own PyTorch builder: `06_custom_network` walks through writing one.

# %%
config = kit.TrainConfig(hidden=tuple(int(h) for h in hidden.split(",")), lr=lr, epochs=epochs, seed=seed)
config = config.smoke_if(smoke)  # smoke=True: the CI profile kit.config.SMOKE (8 epochs)
splits = ds.split(data_config.valid_size, data_config.test_size, data_config.seed)
print(f"train {len(splits.train)} / valid {len(splits.valid)} / test {len(splits.test)} rows")
result = train(ds, config, data_config=data_config, splits=splits, progress=True)

# %% [markdown]
# ## Training curves
#
# The loss on the training and validation splits, epoch by epoch (cross-entropy with a little
# label smoothing, `TrainConfig.label_smoothing`, for classifiers; mean squared error of the
# standardized target for regression). Early stopping watches a validation metric
# (`TrainConfig.monitor`; `auto` is that validation loss for classifiers, RMSE for regression)
# and keeps the weights of its best epoch (dotted line), so a validation loss that rises at the end
# (overfitting) costs nothing. On the right, the learning rate: a short linear warm-up, then a
# cosine decay planned over `epochs` (a run that stops early ends before the rate gets small).

# %%
epochs_run = [h["epoch"] for h in result.history]
loss_name = "MSE (standardized target)" if ds.task == "regression" else "cross-entropy (label-smoothed)"
fig, (losses, rate) = plt.subplots(1, 2, figsize=(11, 3.5))
losses.plot(epochs_run, [h["train_loss"] for h in result.history], label="train")
losses.plot(epochs_run, [h["valid_loss"] for h in result.history], label="valid")
losses.axvline(result.best_epoch, color="gray", ls=":", label=f"best epoch ({result.best_epoch})")
losses.set(xlabel="epoch", ylabel=f"loss: {loss_name}", title="loss")
losses.legend()
rate.plot(epochs_run, [h["lr"] for h in result.history], color="C2")
rate.set(xlabel="epoch", ylabel="learning rate", title="learning rate schedule")
fig.tight_layout()
plt.show()
print(f"best epoch {result.best_epoch} of {len(result.history)} run ({result.stopped})")

# %% [markdown]
# ## Metrics on the test split
#
# `result.bundle` is the trained model. Its metrics were computed through the bundle itself on
# each split; the **test** column is the honest estimate of how it does on new rows.

# %%
bundle = result.bundle
pd.DataFrame(bundle.metrics).round(4)

# %% [markdown]
# ## Predictions next to the truth
#
# `bundle.infer()` is the one prediction path (the HTTP service in `05_package_serve` goes through
# it too): it checks the rows against the schema, preprocesses them and runs the network. It returns
# a `Prediction`; `.to_frame()` gives one row per input with the predicted label and each class's
# probability (or the predicted value). `bundle.predict()` returns just the labels or values.

# %%
test_X, test_y = splits.test.X, ds.decode_target(splits.test.y)
prediction = bundle.infer(test_X)
shown = prediction.to_frame()
shown.insert(0, f"true {ds.target}", test_y)
shown.head(8).round(3)

# %% [markdown]
# ## Where it is right and wrong
#
# For a classifier: the **confusion matrix** (rows: true class, columns: predicted class; the
# diagonal is right) and the **ROC curve** (true-positive rate against false-positive rate as the
# decision threshold moves; one curve per class against the rest when there are more than two).
# For a regression: predicted against actual values (on the diagonal is right) and the residuals.

# %%
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
if ds.task == "regression":
    left.scatter(test_y, prediction.values, s=10, alpha=0.6)
    lims = [min(test_y.min(), prediction.values.min()), max(test_y.max(), prediction.values.max())]
    left.plot(lims, lims, color="gray", ls="--", label="predicted = actual")
    left.set(xlabel=f"actual {ds.target}", ylabel=f"predicted {ds.target}", title="predicted vs actual (test)")
    left.legend()
    right.hist(prediction.values - test_y, bins=30)
    right.set(xlabel="predicted - actual", ylabel="rows", title="residuals (test)")
else:
    ConfusionMatrixDisplay.from_predictions(test_y, prediction.labels, labels=bundle.label_names, ax=left,
                                            colorbar=False, cmap="Blues")
    left.set_title("confusion matrix (test)")
    positives = bundle.label_names[1:] if len(bundle.label_names) == 2 else bundle.label_names
    for label in positives:
        column = bundle.label_names.index(label)
        RocCurveDisplay.from_predictions(test_y == label, prediction.probabilities[:, column], ax=right,
                                         name=f"{label} vs rest" if len(positives) > 1 else str(label))
    right.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="chance")
    right.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test)")
    right.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The network next to its baselines
#
# A network that a logistic regression beats is not worth serving. The baselines were fitted on
# the same preprocessed training split and scored on the same test rows; the release gate checks
# the gap again (`GateConfig.max_baseline_gap`, warn or fail).

# %%
result.baselines

# %% [markdown]
# ## Save the bundle
#
# The bundle directory is all a later step needs: `02_tune`, `03_explain`, `04_quantize` and
# `05_package_serve` take it as `bundle_path` (`kit run` passes it along by itself). Loading it
# again checks every file's sha256. `results.json` records the metrics and paths for CI and for
# the next notebook.

# %%
from kit.results import notebook_results, write_results

bundle_path = bundle.save(output_dir / "bundle")
written = write_results(output_dir, notebook_results(
    "01_data_train", bundle=bundle, bundle_path=bundle_path, smoke=smoke,
    tags={"data_hash": bundle.lineage["data_hash"]},
    steps={"train": {"best_epoch": result.best_epoch, "epochs_run": len(result.history), "stopped": result.stopped}},
))
print(f"bundle: {bundle_path}\nresults: {written}")
