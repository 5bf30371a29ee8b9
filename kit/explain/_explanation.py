"""The :class:`Explanation`: SHAP values of some rows in the original feature space, with its plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.explain import _engines as engines
from kit.sections import ExplanationSection

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BACKGROUND_ARTIFACT = "explain_background.json"
"""Artifact name of the stored background (raw rows, JSON)."""


@dataclass
class Explanation:
    """SHAP values of some rows, in the original feature space.

    Attributes:
        values: SHAP values, shape (rows, features); one-hot columns summed into their feature.
        base_values: Expected explained output over the background, one per row.
        feature_names: Original feature names (schema order).
        data: The explained rows as given (original, unscaled values).
        outputs: The explained model output per row (what ``values`` add up to with the base).
        method: The engine that produced the values (``deep``, ``gradient``, ``permutation``, ``kernel``).
        why: How the method was chosen (each fallback and its reason).
        additivity_error: max over rows of ``|sum(values) + base - output|``, in output units.
        tolerance: The additivity tolerance applied (``tolerance * scale``), in output units.
        output: What the output is, in words (e.g. "log-odds of class 'benign'").
        target: The explained class per row (classification) or ``None``.
        background: The raw background rows (stored by :func:`attach`).
        background_kind: ``sample``, ``kmeans`` or ``stored``.
        seed: Seed of sampling and of the randomized engines.
        row_index: Position of each explained row in the X passed in (differs after sampling).
        elapsed: Seconds spent computing the values.
        config: The :class:`~kit.config.ExplainConfig` it was made with, as a dict.
        predicted: The model's predicted label per row (classification), whatever class is explained.
        confidence: The predicted label's probability per row (classification).
    """

    values: np.ndarray
    base_values: np.ndarray
    feature_names: list[str]
    data: pd.DataFrame
    outputs: np.ndarray
    method: str
    why: str
    additivity_error: float
    tolerance: float
    output: str
    target: list[Any] | None
    background: pd.DataFrame = field(repr=False)
    background_kind: str = "sample"
    seed: int = 0
    row_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    elapsed: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    predicted: list[Any] | None = None
    confidence: np.ndarray | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (f"Explanation(rows={len(self.values)}, features={len(self.feature_names)}, method={self.method!r}, "
                f"output={self.output!r}, additivity_error={self.additivity_error:.2e}, "
                f"background={len(self.background)} {self.background_kind})")

    def importance(self) -> pd.DataFrame:
        """Global ranking: mean |SHAP| per feature, largest first (index = rank from 1)."""
        mean_abs = np.abs(self.values).mean(axis=0)
        order = np.argsort(-mean_abs, kind="stable")
        frame = pd.DataFrame({"feature": [self.feature_names[i] for i in order], "mean_abs_shap": mean_abs[order]})
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
        return frame

    def section(self) -> ExplanationSection:
        """The section :func:`kit.explain.attach` stores in the bundle (and a model card shows)."""
        return ExplanationSection(
            method=self.method, why=self.why, output=self.output,
            importance=[{"feature": f, "mean_abs_shap": float(v)}
                        for f, v in self.importance().itertuples(index=False)],
            additivity_error=self.additivity_error, tolerance=self.tolerance, rows_explained=len(self.values),
            background_size=len(self.background), background_kind=self.background_kind,
            background_artifact=BACKGROUND_ARTIFACT, seed=self.seed, config=dict(self.config),
        )

    def to_shap(self) -> Any:
        """The same values as a ``shap.Explanation`` (for shap's own plots)."""
        shap = _require_shap()
        data = np.column_stack([pd.to_numeric(self.data[c], errors="coerce") if _numeric(self.data[c])
                                else self.data[c].astype(object) for c in self.feature_names])
        return shap.Explanation(self.values, base_values=self.base_values, data=data,
                                feature_names=list(self.feature_names))

    # plots (matplotlib Figures; no pyplot state, safe headless)
    def plot_bar(self, max_display: int = 15) -> Figure:
        """Mean |SHAP| per feature as horizontal bars."""
        from kit.explain import _plots as explain_plots

        return explain_plots.bar(self, max_display)

    def plot_beeswarm(self, max_display: int = 15) -> Figure:
        """Every row's SHAP value per feature, colored by the feature's value."""
        from kit.explain import _plots as explain_plots

        return explain_plots.beeswarm(self, max_display)

    def plot_waterfall(self, row: int = 0, max_display: int = 12) -> Figure:
        """How one row's output is built from the base value, feature by feature."""
        from kit.explain import _plots as explain_plots

        return explain_plots.waterfall(self, row, max_display)

    def plot_dependence(self, feature: str | None = None) -> Figure:
        """SHAP value of one feature (default: the top-ranked) against its value."""
        from kit.explain import _plots as explain_plots

        return explain_plots.dependence(self, feature)


def _require_shap() -> Any:
    return engines.shap_module()


def _numeric(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s))
