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
# # 03 · Explaining predictions with SHAP
#
# Which features drive the model, and why did it predict *this* for *this* row? A feature's
# **SHAP value** for a row is how much that feature moved the model's output away from its average
# output (the **base value**); for every row, base value + the sum of its SHAP values = the model's
# output. `explain()` computes SHAP values per original feature (one-hot columns are summed back
# into their feature), checks that they add up, and picks the method itself (DeepLIFT when exact,
# else gradient or permutation sampling), saying why.
#
# **How long:** about 10 seconds on breast_cancer on a 2-core CPU (its test split has 86 rows, so
# all of them are explained, against 100 background rows), smoke or not; add about 10 seconds when
# the notebook trains its own model. The permutation and kernel methods take much longer than
# DeepLIFT on wide tables.

# %% tags=["parameters"]
# Where to start: a saved bundle, or data to train a new model on
bundle_path: str = ""  # a saved bundle (e.g. runs/01_data_train/bundle); empty: train a new model on `data`
data: str = "breast_cancer"  # used when bundle_path is empty: a built-in dataset or a CSV/Parquet path
target: str = ""  # target column of a CSV/Parquet `data`; empty for built-ins
# The explanation
rows: int = 200  # test rows to explain (the first ones of the bundle's test split)
background_size: int = 100  # training rows the explanation is relative to (the base value is their average)
method: str = "auto"  # auto, deep, gradient, permutation or kernel
row: int = 0  # which explained row to look at in detail
# The run
smoke: bool = False  # tiny settings (kit.config.SMOKE: 20 rows, 30 background rows), for CI
output_dir: str = ""  # where plots, the bundle and results.json go; empty: runs/03_explain in the project

# %% [markdown]
# ## The model to start from
#
# `load_or_train()` returns the bundle saved at `bundle_path` (what `01_data_train` or
# `02_tune` wrote; `kit run` passes it along), or, when `bundle_path` is empty, trains a new
# model on `data` so this notebook also runs on its own.

# %%
# %matplotlib inline
import pandas as pd

import kit
from kit.explain import attach, explain
from kit.notebook import load_or_train, output_folder

output_dir = output_folder(output_dir, "03_explain")
bundle = load_or_train(bundle_path, data, target, smoke=smoke)

# %% [markdown]
# ## Compute the SHAP values
#
# No rows are passed, so `explain()` takes the first `rows` rows of the bundle's own test split and
# explains them against a seeded sample of `background_size` rows of its training split
# (`bundle.reload_data()` rebuilds both, and refuses if the data changed since training). The
# printout says what was explained, how well the values add up, and why this method was chosen.
#
# **What the explained output is.** For a binary classifier it is the **log-odds** of the
# positive class, log(p / (1 − p)), not the probability p: SHAP values add up exactly in log-odds.
# Log-odds 0 means p = 0.5; +2.2 means p ≈ 0.9; −2.2 means p ≈ 0.1. For more than two classes it is
# the centered logit of each row's predicted class; for a regression, the predicted value in the
# target's units.

# %%
config = kit.ExplainConfig(rows=rows, background_size=background_size, method=method)
config = config.smoke_if(smoke)  # smoke=True: the CI profile kit.config.SMOKE (20 rows, 30 background rows)
ex = explain(bundle, config=config)
print(ex)
print(f"explained output: {ex.output}")
print(f"method chosen: {ex.why}")

# %% [markdown]
# ## Global importance
#
# First the mean absolute SHAP value per feature: how far each feature moves the output on
# average, whichever way. The beeswarm below it shows the direction too: one dot per explained row,
# its position the SHAP value (right of 0 pushes the output up), its colour the feature's value
# (red high, blue low).

# %%
importance_plot = output_dir / "importance.png"
fig = ex.plot_bar(max_display=12)
fig.savefig(importance_plot)
display(fig)
display(ex.plot_beeswarm(max_display=12))

# %% [markdown]
# ## How the top feature acts
#
# A dependence plot: the top-ranked feature's value (x) against its SHAP value (y), one dot per
# explained row. A rising cloud means "more of this feature, higher output"; a spread at one x
# means the effect depends on other features too.

# %%
display(ex.plot_dependence())

# %% [markdown]
# ## One row, explained
#
# Row `row` of the explained rows: its true label, what the model predicted, and its feature
# values next to their SHAP values (largest effect first). The waterfall then builds the output
# from the base value, one feature at a time.

# %%
reloaded = bundle.reload_data()  # the split explain() took its rows from
truth = reloaded.dataset.decode_target(reloaded.splits.test.y)[ex.row_index[row]]
features = ex.data.iloc[[row]]
outcome = bundle.infer(features).to_frame()
outcome.insert(0, f"true {bundle.target}", [truth])
display(outcome.round(3))
print(f"explained output ({ex.output}): {ex.outputs[row]:.3f} "
      f"= base value {ex.base_values[row]:.3f} + sum of SHAP values {ex.values[row].sum():.3f}")
contributions = pd.DataFrame({"value": features.iloc[0], "SHAP value": ex.values[row]}, index=ex.feature_names)
contributions.reindex(contributions["SHAP value"].abs().sort_values(ascending=False).index).head(10).round(4)

# %%
display(ex.plot_waterfall(row, max_display=10))

# %% [markdown]
# ## Keep the explanation with the model
#
# `attach()` stores the background rows and the ranking in the bundle, so the served model can
# explain a request (`/explain`) without any extra file, and the model card lists the top
# features.

# %%
from kit.results import notebook_results, write_results

explained = attach(bundle, ex)
bundle_out = explained.save(output_dir / "bundle")
top = ex.importance().head(5)
written = write_results(output_dir, notebook_results(
    "03_explain", bundle=explained, bundle_path=bundle_out, smoke=smoke,
    explanation={**ex.section().to_dict(), "rows": len(ex.values)}, top_features=top["feature"].tolist(),
    artifacts={"importance_plot": importance_plot}, tags={"method": ex.method},
))
print(f"bundle with its explanation: {bundle_out}\nresults: {written}")
top
