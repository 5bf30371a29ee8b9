"""The baselines a data scientist tries first, on the network's own preprocessed split.

A linear model (``LogisticRegression`` for classifiers, ``Ridge`` for regression) and
``HistGradientBoosting``, both with scikit-learn's defaults, are fitted on one thread on exactly the rows and
columns the network trained on (the fitted :class:`~kit.preprocess.Preprocessor`'s output of the
train split) and scored with kit's own metrics on the valid and test splits. The result is a
:class:`~kit.sections.BaselinesSection`: ``train()`` stores it in the bundle, the Train step
reports it next to the network, and the release gate's ``baseline`` check compares against it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from kit import metrics as km
from kit.sections import BaselinesSection

if TYPE_CHECKING:
    from kit.data import Part
    from kit.preprocess import Preprocessor


def estimators(task: str, seed: int = 0) -> dict[str, Any]:
    """The unfitted baselines for ``task``, by name (scikit-learn defaults; seeded where it matters)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    if task == "regression":
        return {"ridge": Ridge(), "hist_gradient_boosting": HistGradientBoostingRegressor(random_state=seed)}
    return {"logistic": LogisticRegression(max_iter=5000),
            "hist_gradient_boosting": HistGradientBoostingClassifier(random_state=seed)}


def _scores(task: str, model: Any, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, float]:
    if task == "regression":
        return km.regression(y, np.asarray(model.predict(x), dtype=np.float64))
    proba = np.zeros((len(x), n_classes))  # a class missing from the train split keeps probability 0
    proba[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(x)
    return km.classification(y, proba)


def fit_baselines(train: Part, evaluate: Mapping[str, Part], preprocessor: Preprocessor, task: str,
                  network: Mapping[str, Mapping[str, float]], *, seed: int = 0) -> BaselinesSection:
    """Fit every baseline on the preprocessed ``train`` rows and score it on each part of ``evaluate``.

    Args:
        train: The network's training split (targets encoded as in training).
        evaluate: Named parts to score, e.g. ``{"valid": splits.valid, "test": splits.test}``.
        preprocessor: The network's fitted preprocessor.
        task: ``binary``, ``multiclass`` or ``regression``.
        network: The network's metrics on the same parts, e.g. ``{"valid": {...}, "test": {...}}``.
        seed: Seed of the randomized baselines.

    Returns:
        The section to store under ``bundle.sections["baselines"]``.
    """
    x_train = preprocessor.transform(train.X).reshape(len(train), -1)  # images: flattened pixels
    x = {name: preprocessor.transform(part.X).reshape(len(part), -1) for name, part in evaluate.items()}
    parts = [train, *evaluate.values()]
    n_classes = 0 if task == "regression" else 1 + int(max(p.y.max(initial=0) for p in parts))
    models: dict[str, dict[str, Any]] = {}
    for name, model in estimators(task, seed).items():
        start = time.perf_counter()
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")  # convergence chatter; the metrics say how well it did
            model.fit(x_train, train.y)
        seconds = time.perf_counter() - start
        models[name] = {"estimator": repr(model), "seconds": seconds,
                        **{part: _scores(task, model, x[part], evaluate[part].y, n_classes) for part in evaluate}}
    metric = km.PRIMARY[task]
    return BaselinesSection(metric=metric, higher_is_better=km.HIGHER_IS_BETTER[metric], models=models,
                            network={k: dict(v) for k, v in network.items()},
                            rows={"train": len(train), **{part: len(evaluate[part]) for part in evaluate}})
