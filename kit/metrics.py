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
    """Metrics for class indices ``y`` and class probabilities ``proba`` of shape (n, k)."""
    from sklearn import metrics as skm

    k = proba.shape[1]
    pred = proba.argmax(axis=1)
    out = {
        "accuracy": float(np.mean(pred == y)),
        "f1": float(skm.f1_score(y, pred, average="binary" if k == 2 else "macro", zero_division=0)),
        "log_loss": float(skm.log_loss(y, _clip(proba), labels=list(range(k)))),
    }
    if k == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y, proba[:, 1])) if len(np.unique(y)) == 2 else float("nan")
    return out


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


def _clip(proba: np.ndarray) -> np.ndarray:
    p = np.clip(proba, 1e-7, 1.0)
    out: np.ndarray = p / p.sum(axis=1, keepdims=True)
    return out
