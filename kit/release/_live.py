"""Live quality per version: metrics on the predictions whose labels arrived, and an estimate for the rest.

Labelled predictions get the same metric functions as training and the gate (:mod:`kit.metrics`),
so the live figures equal what one computes offline on the same rows, each with a 95 % interval:

==========  ==========================================================================
accuracy    Wilson score interval
f1          percentile bootstrap (400 resamples, seeded)
roc_auc     DeLong's variance, normal interval (binary)
log_loss    Student-t interval of the mean per-row loss
rmse        Student-t interval of the mean squared error, square-rooted
mae         Student-t interval of the mean absolute error
r2          percentile bootstrap
==========  ==========================================================================

Predictions whose labels have not arrived get a confidence-based estimate (CBPE, confidence-based
performance estimation): if the model is calibrated, its probabilities are the chances of each
label, so labels are drawn from them (400 seeded simulations) and the metrics computed on each
draw; the estimate is the mean (for accuracy exactly the mean top probability) and the interval
the 2.5 and 97.5 percentiles. It is only as good as the calibration, so the expected calibration
error on the labelled rows is reported beside it. Regression outputs carry no uncertainty, so
there is no estimate for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kit import metrics as kit_metrics
from kit.release._stats import ALPHA, BOOTSTRAP, bootstrap, delong, interval, mean_interval, wilson

CBPE = ("CBPE: labels drawn from the model's own probabilities (400 seeded simulations); value = mean, "
        "interval = 2.5-97.5 percentiles; valid when the model is calibrated")


class Outputs:
    """Logged outputs of one version, decoded: classes and probabilities, or values.

    Args:
        outputs: The JSON output records (``{"prediction", "probabilities"}`` or ``{"prediction"}``).
        classes: The class labels in probability-column order (default: from the first record).
    """

    proba: np.ndarray | None
    values: np.ndarray | None

    def __init__(self, outputs: list[dict[str, Any]], classes: list[str] | None = None) -> None:
        first = next((o for o in outputs if o is not None), {})
        probs = first.get("probabilities")
        self.classes = classes or (list(probs) if isinstance(probs, dict) else None)
        if self.classes is not None:
            self.task = "binary" if len(self.classes) == 2 else "multiclass"
            self.proba = np.array([[o["probabilities"].get(c, 0.0) for c in self.classes] for o in outputs],
                                  dtype=np.float64).reshape(len(outputs), len(self.classes))
            self.values = None
            self.predicted = [str(o["prediction"]) for o in outputs]
        else:
            self.task = "regression"
            self.proba = None
            self.values = np.array([float(o["prediction"]) for o in outputs], dtype=np.float64)
            self.predicted = [str(v) for v in self.values]

    def labels(self, raw: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Labels as class indices (or floats) and a mask of the usable ones (a label not among the classes is not)."""
        if self.classes is None:
            y = np.array([_float(v) for v in raw], dtype=np.float64)
            return y, np.isfinite(y)
        index = {c: i for i, c in enumerate(self.classes)}
        y = np.array([index.get(str(v), -1) for v in raw], dtype=np.int64)
        return y, y >= 0


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def labelled_metrics(out: Outputs, y: np.ndarray, alpha: float = ALPHA) -> dict[str, dict[str, Any]]:
    """Every metric of the task on labelled rows, each with its interval and method."""
    n = len(y)
    if n == 0:
        return {}
    if out.proba is None:
        assert out.values is not None
        pred = out.values
        point = kit_metrics.regression(y, pred)
        err = pred - y
        _, mse_lo, mse_hi = mean_interval(err ** 2, alpha)
        _, mae_lo, mae_hi = mean_interval(np.abs(err), alpha)
        r2_lo, r2_hi = bootstrap(lambda a, b: kit_metrics.regression(a, b)["r2"], (y, pred), alpha)
        return {"rmse": interval(point["rmse"], float(np.sqrt(max(mse_lo, 0.0))), float(np.sqrt(max(mse_hi, 0.0))),
                                 "Student-t on the mean squared error, square-rooted", n),
                "mae": interval(point["mae"], mae_lo, mae_hi, "Student-t on the mean absolute error", n),
                "r2": interval(point["r2"], r2_lo, r2_hi, f"percentile bootstrap ({BOOTSTRAP})", n)}
    proba = out.proba
    point = kit_metrics.classification(y, proba)
    k = proba.shape[1]
    correct = float(np.sum(proba.argmax(axis=1) == y))
    lo, hi = wilson(correct, n, alpha)
    res = {"accuracy": interval(point["accuracy"], lo, hi, "Wilson score", n)}
    f_lo, f_hi = bootstrap(lambda a, p: kit_metrics._f1(a, p, k), (y, proba.argmax(axis=1)), alpha)
    res["f1"] = interval(point["f1"], f_lo, f_hi, f"percentile bootstrap ({BOOTSTRAP})", n)
    if k == 2:
        auc, a_lo, a_hi = delong(y, proba[:, 1], alpha)
        res["roc_auc"] = interval(point.get("roc_auc", auc), a_lo, a_hi, "DeLong", n)
    losses = -np.log(kit_metrics._clip(proba)[np.arange(n), y])
    _, l_lo, l_hi = mean_interval(losses, alpha)
    res["log_loss"] = interval(point["log_loss"], l_lo, l_hi, "Student-t on the mean per-row loss", n)
    return res


def estimated_metrics(proba: np.ndarray, alpha: float = ALPHA, simulations: int = BOOTSTRAP,
                      seed: int = 0) -> dict[str, dict[str, Any]]:
    """Confidence-based estimates of accuracy, F1 (and ROC-AUC for binary) for unlabelled rows."""
    from scipy.stats import rankdata

    n, k = proba.shape
    if n == 0:
        return {}
    rng = np.random.default_rng(seed)
    pred = proba.argmax(axis=1)
    cum = np.cumsum(proba, axis=1)[:, :-1]  # a draw below 1 never passes the last class's bound of 1
    chunk = max(1, 2_000_000 // (n * k))  # simulations per draw, bounding memory to ~16 MB
    draws = np.concatenate([(rng.random((min(chunk, simulations - s), n, 1)) > cum[None, :, :]).sum(axis=2)
                            for s in range(0, simulations, chunk)])  # (simulations, n) labels drawn from proba
    acc = (draws == pred[None, :]).mean(axis=1)
    f1 = _f1_draws(draws, pred, k)
    out = {"accuracy": _spread(float(proba.max(axis=1).mean()), acc, alpha, n),
           "f1": _spread(float(f1.mean()), f1, alpha, n)}
    if k == 2:
        ranks = rankdata(proba[:, 1])
        pos = draws.sum(axis=1).astype(np.float64)
        neg = n - pos
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = ((draws * ranks[None, :]).sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)
        auc = auc[np.isfinite(auc)]
        if len(auc):
            out["roc_auc"] = _spread(float(auc.mean()), auc, alpha, n)
    return out


def _f1_draws(draws: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """:func:`kit.metrics._f1` of every draw (a row of ``draws``) against ``pred`` at once, with the same values."""
    classes = [1] if k == 2 else list(range(k))
    total = np.zeros(len(draws))
    for c in classes:  # summed class by class, in kit.metrics' order
        predicted = pred == c
        drawn = draws == c
        tp = (drawn & predicted[None, :]).sum(axis=1)
        denom = int(predicted.sum()) + drawn.sum(axis=1)
        total = total + np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    out: np.ndarray = total / len(classes)
    return out


def _spread(value: float, draws: np.ndarray, alpha: float, n: int) -> dict[str, Any]:
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return interval(value, float(lo), float(hi), CBPE, n)

