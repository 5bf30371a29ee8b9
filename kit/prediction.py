"""What the one predict path returns, and its three shapes: arrays, a DataFrame, JSON records.

:meth:`kit.bundle.ModelBundle.infer` returns a :class:`Prediction`; the notebook reads its arrays,
the batch scorer writes :meth:`Prediction.to_frame`, the service answers :meth:`Prediction.records`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (numerically stable)."""
    e: np.ndarray = np.exp(z - z.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class Prediction:
    """What one call of the predict path returns.

    Attributes:
        labels: Predicted labels (classification) or ``None``.
        probabilities: Class probabilities, shape (n, k), columns in ``label_names`` order.
        values: Predicted values (regression) or ``None``.
        label_names: The class labels, in column order of ``probabilities``.
    """

    labels: list[Any] | None = None
    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None
    label_names: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.values) if self.values is not None else len(self.labels or [])

    def to_dict(self) -> dict[str, Any]:
        """Column-wise JSON-able form: ``predictions`` (and ``probabilities``, ``labels``)."""
        if self.values is not None:
            return {"predictions": self.values.tolist()}
        assert self.probabilities is not None
        return {"predictions": self.labels, "probabilities": self.probabilities.tolist(),
                "labels": self.label_names}

    def records(self) -> list[dict[str, Any]]:
        """One JSON record per row: ``{"prediction": ...}`` plus ``probabilities`` by label (the service's answer)."""
        if self.values is not None:
            return [{"prediction": float(v)} for v in self.values]
        assert self.probabilities is not None and self.labels is not None and self.label_names is not None
        names = [str(n) for n in self.label_names]
        rows: list[list[float]] = self.probabilities.tolist()  # Python floats, as float() of each value
        return [{"prediction": _plain(label), "probabilities": dict(zip(names, p, strict=True))}
                for label, p in zip(self.labels, rows, strict=True)]

    def to_frame(self) -> pd.DataFrame:
        """One row per input: ``prediction`` and, for classifiers, ``proba_<label>`` columns."""
        if self.values is not None:
            return pd.DataFrame({"prediction": self.values})
        assert self.probabilities is not None and self.label_names is not None
        frame = pd.DataFrame({"prediction": self.labels})
        for i, label in enumerate(self.label_names):
            frame[f"proba_{label}"] = self.probabilities[:, i]
        return frame
