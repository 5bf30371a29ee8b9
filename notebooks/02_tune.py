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
# # 02 · Tuning with Optuna
#
# Search the network's hyperparameters (depth, width, dropout, learning rate, weight decay, batch
# size) with Optuna. Every trial trains on the same split; unpromising trials are **pruned** after a
# few epochs. The study lives in a SQLite file by default; give `storage` a PostgreSQL URL and many
# machines can work on one study (`kit tune-worker`). Running again with the same `study_name`
# resumes it.

# %% tags=["parameters"]
bundle_path: str = ""  # a saved bundle to continue from (e.g. 01_data_train's); empty: train one on `data`
data: str = "breast_cancer"  # dataset used when bundle_path is empty

n_trials: int = 20  # finished trials the study should hold (a re-run resumes up to this)
timeout: float = 0.0  # stop starting trials after this many seconds (0: no limit)
pruner: str = "median"  # median, hyperband or none
storage: str = ""  # empty: a SQLite file in output_dir; or an SQLAlchemy URL (postgresql+psycopg2://...)
study_name: str = ""  # empty: kit-<data>-<metric>
trial_epochs: int = 60  # maximum epochs per trial
smoke: bool = False  # 3 short trials, for CI
output_dir: str = "../runs/02_tune"  # where the study, the tuned bundle and results.json go

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

# %% [markdown]
# ## Run the study
#
# `tune()` starts from the bundle's training config (the search space overrides some fields) and
# returns the study, the best parameters and the best configuration retrained into a bundle.

# %%
import logging

import optuna

from kit.tune import tune

optuna.logging.set_verbosity(logging.WARNING)
config = kit.TuneConfig(n_trials=n_trials, timeout=timeout or None, pruner=pruner, storage=storage or None,
                        study_name=study_name or None, epochs=trial_epochs, patience=15,
                        run_dir=str(Path(output_dir) / "study"))
config = config.smoke() if smoke else config  # smoke: the tiny CI profile (kit.config.SMOKE)
start = kit.TrainConfig.from_dict(bundle.configs["train"])  # trials start from the bundle's own config
result = tune(data_config, config, train=start)
print(f"study {result.study.study_name} ({result.storage}): {result.counts()}")
print(f"best trial {result.best_trial}: {result.metric} = {result.best_value:.4f}")
result.best_params

# %% [markdown]
# ## Trials
#
# Each row is one trial: its state (COMPLETE or PRUNED), its validation value and its parameters.
# The plot shows how the best value improved as the sampler learned where to look.

# %%
trials = result.study.trials_dataframe(attrs=("number", "state", "value", "params", "duration"))
display(trials.round(5))
done = trials[trials["state"] == "COMPLETE"]
best = done["value"].cummax() if result.direction == "maximize" else done["value"].cummin()
fig, ax = plt.subplots(figsize=(6, 3))
ax.scatter(done["number"], done["value"], label="trial")
ax.step(done["number"], best, where="post", color="C3", label="best so far")
ax.set_xlabel("trial")
ax.set_ylabel(f"valid {result.metric}")
ax.legend()
plt.show()

# %% [markdown]
# ## Tuned versus starting model
#
# The best configuration was retrained on the same split; compare its test metrics with the model
# we started from.

# %%
tuned = result.bundle
display(pd.DataFrame({"start": bundle.metrics["test"], "tuned": tuned.metrics["test"]}).round(4))
plots_path = result.save_plots(Path(output_dir) / "tuning_plots.html")
bundle_out = tuned.save(Path(output_dir) / "bundle")

# %%
from kit.results import notebook_results, write_results

write_results(output_dir, notebook_results(
    "02_tune", bundle=tuned, bundle_path=bundle_out, smoke=smoke, start_metrics=bundle.metrics,
    tuning=result.summary().to_dict(), artifacts={"plots": str(plots_path.resolve())},
    tags={"study": result.study.study_name, "storage": result.storage},
))
