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
# Which features drive the model, and why did it predict *this* for *this* row? `explain()` computes
# SHAP values per original feature (one-hot columns are summed back into their feature) and checks
# that they add up to the model output. It picks the method itself (DeepLIFT when exact, else
# gradient or permutation) and says why.

# %% tags=["parameters"]
bundle_path: str = ""  # a saved bundle to continue from (e.g. 01_data_train's); empty: train one on `data`
data: str = "breast_cancer"  # dataset used when bundle_path is empty

rows: int = 200  # test rows to explain
background_size: int = 100  # training rows the explanation is relative to
method: str = "auto"  # auto, deep, gradient, permutation or kernel
smoke: bool = False  # fewer rows, for CI
output_dir: str = "../runs/03_explain"  # where plots, the bundle and results.json go

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
from kit.explain import attach, explain

config = kit.ExplainConfig(rows=rows, background_size=background_size, method=method)
config = config.smoke() if smoke else config  # smoke: the tiny CI profile (kit.config.SMOKE)
# No rows and no background given: the first `rows` rows of the bundle's own test split, explained
# against a seeded sample of its own training split (bundle.reload_data() rebuilds both).
ex = explain(bundle, config=config)
print(ex)
print(ex.why)

# %% [markdown]
# ## Global importance
#
# Mean absolute SHAP value per feature: how much each feature moves the output on average. The
# beeswarm shows the direction too (colour = the feature's value).

# %%
Path(output_dir).mkdir(parents=True, exist_ok=True)
fig = ex.plot_bar(max_display=12)
fig.savefig(Path(output_dir) / "importance.png")
display(fig)
display(ex.plot_beeswarm(max_display=12))

# %% [markdown]
# ## One row
#
# The waterfall starts at the average output (the base value) and adds each feature's contribution
# until it reaches this row's output.

# %%
print(f"row 0: output {ex.outputs[0]:.3f} = base {ex.base_values[0]:.3f} + {ex.values[0].sum():.3f}")
display(ex.plot_waterfall(0, max_display=10))
display(ex.plot_dependence())

# %% [markdown]
# ## Keep the explanation with the model
#
# `attach()` stores the background rows and the ranking in the bundle, so the served model can
# explain a request (`/explain`) without any extra file.

# %%
from kit.results import notebook_results, write_results

explained = attach(bundle, ex)
bundle_out = explained.save(Path(output_dir) / "bundle")
top = ex.importance().head(5)
write_results(output_dir, notebook_results(
    "03_explain", bundle=explained, bundle_path=bundle_out, smoke=smoke,
    explanation={**ex.section().to_dict(), "rows": len(ex.values)}, top_features=top["feature"].tolist(),
    artifacts={"importance_plot": str((Path(output_dir) / "importance.png").resolve())}, tags={"method": ex.method},
))
top
