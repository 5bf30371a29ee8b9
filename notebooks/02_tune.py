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
# size) with Optuna. Every trial trains on the same split; a trial that is clearly worse than the
# others after a few epochs is **pruned** (stopped early), so the search spends its time on the
# promising ones. The study lives in a SQLite file by default; give `storage` a PostgreSQL URL and
# many machines can work on one study (`kit tune-worker`). Running again with the same
# `study_name` and storage resumes the study.
#
# **How long:** with the defaults (20 trials of at most 60 epochs, about half of them pruned) under a
# minute on breast_cancer on a 2-core CPU; `smoke=True` (3 trials of 6 epochs) about 15 seconds. Time
# grows with `n_trials`, `trial_epochs` and the size of the data.

# %% tags=["parameters"]
# Where to start: a saved bundle, or data to train a new model on
bundle_path: str = ""  # a saved bundle (e.g. runs/01_data_train/bundle); empty: train a new model on `data`
data: str = "breast_cancer"  # used when bundle_path is empty: a built-in dataset or a CSV/Parquet path
target: str = ""  # target column of a CSV/Parquet `data`; empty for built-ins
# The search
n_trials: int = 20  # finished trials the study should hold (a re-run resumes up to this)
timeout: float = 0.0  # stop starting trials after this many seconds (0: no limit)
pruner: str = "median"  # median, hyperband or none
trial_epochs: int = 60  # maximum epochs per trial
trial_patience: int = 15  # early-stopping patience per trial (epochs without improvement)
storage: str = ""  # empty: a SQLite file in output_dir; or an SQLAlchemy URL (postgresql+psycopg2://...)
study_name: str = ""  # empty: kit-<data>-<metric>
# The run
smoke: bool = False  # tiny settings (kit.config.SMOKE: 3 trials of 6 epochs), for CI
output_dir: str = ""  # where the study, the tuned bundle and results.json go; empty: runs/02_tune in the project

# %% [markdown]
# ## The model to start from
#
# `load_or_train()` returns the bundle saved at `bundle_path` (what `01_data_train` wrote; `kit run`
# passes it along), or, when `bundle_path` is empty, trains a new model on `data` so this notebook
# also runs on its own. Tuning starts from that model's training settings and uses its data and
# split.

# %%
# %matplotlib inline
import logging

import matplotlib.pyplot as plt
import optuna
import pandas as pd

import kit
from kit.notebook import load_or_train, output_folder
from kit.tune import tune

output_dir = output_folder(output_dir, "02_tune")
bundle = load_or_train(bundle_path, data, target, smoke=smoke)

# %% [markdown]
# ## Run the study
#
# `tune()` samples a configuration per trial (TPE sampler), trains it and reports the validation
# metric after every epoch; the pruner stops a trial whose curve falls below the median of the
# earlier trials at the same epoch. At the end the best configuration is retrained on the same split
# into a new bundle.

# %%
optuna.logging.set_verbosity(logging.WARNING)  # one line per trial is too much in a notebook
config = kit.TuneConfig(n_trials=n_trials, timeout=timeout or None, pruner=pruner, storage=storage or None,
                        study_name=study_name or None, epochs=trial_epochs, patience=trial_patience,
                        run_dir=str(output_dir / "study"))
config = config.smoke_if(smoke)  # smoke=True: the CI profile kit.config.SMOKE (3 trials of 6 epochs)
start = kit.TrainConfig.from_dict(bundle.configs["train"])  # trials start from the bundle's own settings
result = tune(bundle.data_config, config, train=start)
print(f"study {result.study.study_name} ({result.storage}): {result.counts()}")
print(f"best trial {result.best_trial}: valid {result.metric} = {result.best_value:.4f}")
result.best_params

# %% [markdown]
# ## The trials, pruned ones included
#
# Left: each trial's validation metric epoch by epoch (the best so far, which is what the pruner
# sees). Blue trials ran to the end; red ones were pruned where their curve stops (x): they were
# behind the median of the earlier trials, so their remaining epochs were saved. Right: every
# trial in the order it ran, and the best completed value so far: the sampler learns where to
# look. (The median pruner starts judging after 5 completed trials, so a short study prunes
# nothing.)

# %%
display(result.plot_trials())
trials = result.study.trials_dataframe(attrs=("number", "state", "value", "duration", "params"))
trials["duration"] = trials["duration"].dt.total_seconds().round(1)
trials.rename(columns=lambda c: c.removeprefix("params_")).rename(
    columns={"value": f"valid {result.metric}", "duration": "seconds"}).round(5)

# %% [markdown]
# ## Which parameters mattered
#
# fANOVA importance: the share of the variation in the validation metric that each searched
# parameter explains (the shares sum to 1). It needs at least two completed trials, and it is
# only a rough guide until the study holds a few dozen.

# %%
importance = pd.Series(result.importances(), name="importance")
if importance.empty:
    print("too few completed trials to rank the parameters")
else:
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(importance) + 1))
    importance.sort_values().plot.barh(ax=ax)
    ax.set(xlabel="importance (share of the variation explained)", title="parameter importance")
    plt.show()

# %% [markdown]
# ## Tuned versus starting model
#
# The best configuration, retrained on the same split, against the model we started from, on
# the test split that neither saw during training or tuning.

# %%
tuned = result.bundle
pd.DataFrame({"start": bundle.metrics["test"], "tuned": tuned.metrics["test"]}).round(4)

# %% [markdown]
# ## Save
#
# The tuned bundle (it records its study and trial in `bundle.tuning`), Optuna's interactive
# plotly figures in one HTML file (history, importances, parallel coordinates, intermediate
# values), and `results.json`.

# %%
from kit.results import notebook_results, write_results

bundle_out = tuned.save(output_dir / "bundle")
plots_path = result.save_plots(output_dir / "tuning_plots.html")
trials_plot = output_dir / "trials.png"
result.plot_trials().savefig(trials_plot)
written = write_results(output_dir, notebook_results(
    "02_tune", bundle=tuned, bundle_path=bundle_out, smoke=smoke, start_metrics=bundle.metrics,
    tuning=result.summary().to_dict(), importances=result.importances(),
    artifacts={"plots": plots_path, "trials_plot": trials_plot},
    tags={"study": result.study.study_name, "storage": result.storage},
))
print(f"tuned bundle: {bundle_out}\ninteractive plots: {plots_path}\nresults: {written}")
