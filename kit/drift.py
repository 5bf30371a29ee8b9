"""Reference statistics at train time and the population stability index (PSI) at serve time.

The reference is a few numbers per feature stored as JSON in the bundle: decile bin edges and
shares (for PSI) plus the 101 percentiles and the row count (for the Kolmogorov-Smirnov test of
:mod:`kit.release`) for numeric columns; category shares and the row count for categorical ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

EPS = 1e-4
N_BINS = 10
N_QUANTILES = 101
"""Percentiles 0, 1, ..., 100 of each numeric column: the reference CDF of the KS test (within 0.01)."""


def reference(X: pd.DataFrame, kinds: dict[str, str]) -> dict[str, Any]:
    """Summarize the training features for later drift checks.

    Args:
        X: Training features.
        kinds: ``numeric`` or ``categorical`` per column (from the preprocessor).

    Returns:
        A JSON-able dict keyed by column.
    """
    out: dict[str, Any] = {}
    numeric = [name for name, kind in kinds.items() if kind == "numeric"]
    if numeric:  # one vectorized quantile pass over every numeric column
        matrix = X[numeric].to_numpy(dtype=np.float64)
        probs = np.linspace(0, 1, N_BINS + 1)[1:-1]
        cuts = np.nanquantile(matrix, probs, axis=0) if np.isnan(matrix).any() else np.quantile(matrix, probs, axis=0)
    for name, kind in kinds.items():
        if kind == "numeric":
            j = numeric.index(name)
            values = matrix[:, j][~np.isnan(matrix[:, j])]
            edges = np.unique(cuts[:, j])
            counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
            quantiles = np.quantile(values, np.linspace(0, 1, N_QUANTILES)) if len(values) else np.array([])
            out[name] = {"kind": kind, "edges": edges.tolist(), "shares": (counts / counts.sum()).tolist(),
                         "quantiles": quantiles.tolist(), "n": len(values)}
        else:
            present = X[name].dropna().astype(str)
            shares = present.value_counts(normalize=True).sort_index()
            out[name] = {"kind": kind, "categories": shares.index.tolist(), "shares": shares.tolist(),
                         "n": len(present)}
    return out


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two share vectors (0: same; > 0.25: large shift)."""
    e = np.clip(np.asarray(expected, dtype=np.float64), EPS, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def shares(ref: dict[str, Any], values: Any) -> np.ndarray:
    """Shares of ``values`` over the bins (or categories, plus one 'other' bin) of ``ref``."""
    if ref["kind"] == "numeric":
        x = np.asarray(values, dtype=np.float64)
        x = x[~np.isnan(x)]
        counts = np.bincount(np.searchsorted(np.asarray(ref["edges"]), x, side="right"),
                             minlength=len(ref["edges"]) + 1).astype(np.float64)
    else:
        cats = list(ref["categories"])
        index = {c: i for i, c in enumerate(cats)}
        counts = np.zeros(len(cats) + 1)
        for v in values:
            if v is not None:
                counts[index.get(str(v), len(cats))] += 1
    total = counts.sum()
    return counts / total if total else counts


def report(ref: dict[str, dict[str, Any]], X: pd.DataFrame) -> dict[str, float]:
    """PSI per feature of ``X`` against the reference."""
    out: dict[str, float] = {}
    for name, r in ref.items():
        if name not in X.columns:
            continue
        expected = np.asarray(r["shares"], dtype=np.float64)
        if r["kind"] != "numeric":
            expected = np.append(expected, 0.0)
        out[name] = psi(expected, shares(r, X[name].tolist()))
    return out
