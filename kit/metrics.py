"""Task metrics computed with numpy and scikit-learn.

Classification: accuracy, F1 (positive class for binary, macro for multiclass), ROC-AUC
(binary), log loss. Regression: RMSE, MAE, R².
"""

from __future__ import annotations

import numpy as np

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True, "f1": True, "roc_auc": True, "log_loss": False,
    "rmse": False, "mae": False, "r2": True,
}
"""Direction of every metric kit reports."""

PRIMARY: dict[str, str] = {"binary": "accuracy", "multiclass": "accuracy", "regression": "r2"}
"""The headline metric per task (gates, quantization budgets, tuning default)."""


def classification(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Metrics for class indices ``y`` and class probabilities ``proba`` of shape (n, k).

    Plain numpy (the same definitions as scikit-learn's, checked in tests): this runs after
    every training and inside tuning, where scikit-learn's argument validation costs more than
    the arithmetic.
    """
    y = np.asarray(y, dtype=np.int64)
    k = proba.shape[1]
    pred = proba.argmax(axis=1)
    out = {
        "accuracy": float(np.mean(pred == y)),
        "f1": _f1(y, pred, k),
        "log_loss": float(-np.mean(np.log(_clip(proba)[np.arange(len(y)), y]))),
    }
    if k == 2:
        out["roc_auc"] = _roc_auc(y, proba[:, 1])
    return out


def _f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """F1 of class 1 for binary, unweighted mean over classes for multiclass (0 where undefined)."""
    classes = [1] if k == 2 else list(range(k))
    scores = []
    for c in classes:
        tp = float(np.sum((pred == c) & (y == c)))
        denom = float(np.sum(pred == c) + np.sum(y == c))
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve from the rank-sum statistic (ties get average ranks)."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    bounds = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(score)]))
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def regression(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Metrics for true values ``y`` and predictions ``pred``."""
    err = pred - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": float(1.0 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
    }


def compute(task: str, y: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Metrics for ``task`` given probabilities (classification) or values (regression)."""
    return regression(y, output) if task == "regression" else classification(y, output)


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: the confidence-weighted gap between confidence and accuracy over equal-width bins."""
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(float(correct[mask].mean()) - float(conf[mask].mean()))
    return float(ece)


def _clip(proba: np.ndarray) -> np.ndarray:
    p = np.clip(proba, 1e-7, 1.0)
    out: np.ndarray = p / p.sum(axis=1, keepdims=True)
    return out


def table(metrics: dict[str, dict[str, float]]) -> str:
    """Metrics by split as an aligned text table (splits as columns), for the CLI and logs."""
    import pandas as pd

    return pd.DataFrame(metrics).to_string(float_format=lambda v: f"{v:.4f}")
