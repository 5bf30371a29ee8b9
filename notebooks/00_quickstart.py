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
# # kit quickstart: every step in one wizard
#
# This notebook is the whole path from a table to a served model, in one tabbed UI:
# **Data → Train → Tune → Explain → Quantize → Gate → Package & serve**. Each tab is a thin panel
# over a `kit` function, and all tabs share one *session*, so a model trained in *Train* is the one
# *Tune*, *Explain*, *Quantize*, *Gate* and *Package* work on. The *Package* tab always serves the
# current model: a retrain, tune, quantize, gate or data change drops the stored tag, and its test
# request checks the served tag and probabilities against this notebook's.
#
# Run all cells. With `autorun = True` (the default) the cell after the wizard runs every step
# from code, so the notebook also works headless (`kit run`, papermill) and the tabs fill in as it
# goes. Set `autorun = False` to click through the tabs yourself: long steps run in the
# background with a **Stop** button, so the notebook never freezes.

# %% tags=["parameters"]
data: str = "breast_cancer"  # built-in (breast_cancer, wine, digits, diabetes, digits_images), a file or image folder
target: str = ""  # target column; needed for files, empty for built-ins
epochs: int = 200  # maximum training epochs (early stopping is on)
autorun: bool = True  # run every step from code below the wizard; False to click through it yourself
steps: str = "data,train,tune,explain,quantize,gate,package"  # the steps autorun runs, comma separated
smoke: bool = False  # tiny epochs and trials, for CI
output_dir: str = ""  # where bundles and results.json go; empty: runs/00_quickstart in the project folder

# %%
import kit
from kit.notebook import output_folder
from kit.ui import Wizard

wizard = Wizard(data=kit.DataConfig(source=data, target=target or None),
                train=kit.TrainConfig(epochs=epochs), output_dir=output_folder(output_dir, "00_quickstart"),
                smoke=smoke)
wizard

# %% [markdown]
# ## Run every step from code
#
# `wizard.run_all()` runs the same panels synchronously, one step after the other, and prints each
# step's outcome as a plain table and plot below. The tabs above update while it runs, and so does
# their static copy, which is what an HTML report shows (no widget renderer or network needed).

# %%
if autorun:
    wizard.run_all([s.strip() for s in steps.split(",") if s.strip() in wizard.panels])
else:
    print("autorun is off: use the tabs above")

# %% [markdown]
# ## Results
#
# The session holds every step's outcome; `results.json` in `output_dir` keeps the metrics, the
# files written and the names registered (e.g. the model store tag), for CI and for the next notebook.

# %%
import json

path = wizard.write_results("00_quickstart")
summary = json.loads(path.read_text())
print(path)
print(json.dumps({k: summary[k] for k in ("task", "primary_metric", "bundle_path", "tags")}, indent=2))
