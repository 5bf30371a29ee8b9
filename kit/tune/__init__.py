"""Tuning: Optuna studies with pruning, resumable and distributed on a real database.

:func:`tune` searches TrainConfig hyperparameters with Optuna. Every trial trains on the same
splits; each epoch, the best validation value so far is reported to the pruner through a
training callback (``median``, ``hyperband`` or ``none``), so a pruned trial is recorded PRUNED,
not FAIL.

The study lives in a storage (see :func:`resolve`): a SQLite file under the run directory by
default, any SQLAlchemy URL (PostgreSQL for many machines) or a journal file. ``n_trials`` is the
study's *target*: the number of finished (COMPLETE or PRUNED) trials. Running again with the
same study name resumes until the target is reached. The study stores its own recipe (data, base
config, space, metric, pruner, sampler) as the user attribute ``kit``, so
``kit tune-worker --storage URL --study NAME`` can join from another machine.

Search spaces name TrainConfig fields and, as ``net.<param>``, the network builder's parameters:
``{"net.width": "int(16, 128, log)", "net.blocks": "int(1, 3)", "lr": "float(1e-4, 1e-2, log)"}``.

Modules: ``_tune`` (tune, create_study, run_worker), ``_study`` (recipe, objective, worker loop),
``_space`` (search-space syntax), ``_storage`` (storage specs), ``_plots`` (figures, importances).

Example::

    from kit.tune import tune
    result = tune("breast_cancer", n_trials=30, study_name="bc")
    result.bundle.save("runs/bc-tuned"); result.save_plots("reports/bc-tuning.html")
"""

from __future__ import annotations

from kit._urls import redact, resolve
from kit.config import PRUNERS, SAMPLERS, TuneConfig
from kit.tune._plots import importances, plot_trials, plots, save_plots
from kit.tune._space import DEFAULT_SPACE, TRAINING_SPACE, Space, default_space
from kit.tune._tune import TuneResult, create_study, run_worker, trial_counts, tune

__all__ = ["DEFAULT_SPACE", "PRUNERS", "SAMPLERS", "TRAINING_SPACE", "Space", "TuneConfig", "TuneResult",
           "create_study", "default_space", "importances", "plot_trials", "plots", "redact", "resolve", "run_worker",
           "save_plots", "trial_counts", "tune"]
