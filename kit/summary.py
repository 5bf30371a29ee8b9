"""What a user looks at first about a dataset: rows, columns, kinds, missing values, class balance, constants.

A constant column (one value, or one value and missing cells) carries nothing to learn from: the
summary flags it, the preprocessor leaves it out of the features (recorded in its state and the
bundle's schema, so requests need not send it) and the model card lists it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from kit.data import Dataset


def py_value(value: Any) -> Any:
    """Turn a numpy scalar into a plain Python value (JSON-able); other values pass through."""
    return value.item() if isinstance(value, np.generic) else value


def constant_columns(frame: pd.DataFrame) -> dict[str, Any]:
    """Columns holding a single value (missing cells aside), with that value."""
    out: dict[str, Any] = {}
    for name in frame.columns:
        present = frame[name].dropna()
        if len(present) and present.nunique() == 1:
            out[str(name)] = py_value(present.iloc[0])
    return out


@dataclass(frozen=True)
class DataSummary:
    """A printable, notebook-friendly summary of a dataset.

    Attributes:
        constant: Feature columns with a single value (left out of the model's features).
    """

    name: str
    task: str
    target: str
    rows: int
    features: int
    columns: pd.DataFrame
    class_balance: pd.DataFrame | None
    constant: dict[str, Any]

    @property
    def constant_note(self) -> str:
        """One sentence about constant columns (empty when there are none)."""
        if not self.constant:
            return ""
        shown = ", ".join(f"{k!r} (always {v!r})" for k, v in self.constant.items())
        return f"constant columns, left out of the features when training (requests need not send them): {shown}"

    def __str__(self) -> str:
        head = (f"{self.name}: {self.rows} rows, {self.features} features, target {self.target!r} "
                f"({self.task}), {int(self.columns['missing'].sum())} missing values")
        parts = [head, self.columns.to_string(na_rep="")]
        if self.constant:
            parts.append(self.constant_note)
        if self.class_balance is not None:
            parts.append(self.class_balance.to_string())
        return "\n\n".join(parts)

    def _repr_html_(self) -> str:
        html = f"<p><b>{self.name}</b>: {self.rows} rows, {self.features} features, target " \
               f"<code>{self.target}</code> ({self.task})</p>" + self.columns.to_html(na_rep="")
        if self.constant:
            html += f"<p><b>{self.constant_note}</b></p>"
        if self.class_balance is not None:
            html += self.class_balance.to_html()
        return html


def summarize(dataset: Dataset) -> DataSummary:
    """The summary of ``dataset`` (see :meth:`kit.data.Dataset.summary`)."""
    frame = dataset.frame
    constant = {k: v for k, v in constant_columns(frame).items() if k != dataset.target}
    cols = []
    for name in frame.columns:
        s = frame[name]
        numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        cols.append({
            "column": name,
            "role": "target" if name == dataset.target else ("constant" if name in constant else "feature"),
            "dtype": str(s.dtype),
            "kind": "numeric" if numeric else "categorical",
            "missing": int(s.isna().sum()),
            "unique": int(s.nunique()),
            "mean": float(s.mean()) if numeric else None,
            "min": py_value(s.min()) if numeric else None,
            "max": py_value(s.max()) if numeric else None,
        })
    balance = None
    if dataset.task != "regression":
        balance = frame[dataset.target].value_counts().rename("rows").to_frame()
        balance["share"] = balance["rows"] / balance["rows"].sum()
    return DataSummary(dataset.name, dataset.task, dataset.target, len(frame), len(dataset.feature_names),
                       pd.DataFrame(cols).set_index("column"), balance, constant)
