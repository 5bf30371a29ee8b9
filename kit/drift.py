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


def image_stats(pixels: np.ndarray, sizes: np.ndarray | None = None) -> pd.DataFrame:
    """What image drift is measured on: per image, each channel's mean and std (0-255) and the file's size.

    Args:
        pixels: uint8 ``(n, height, width, channels)`` as the model takes them.
        sizes: Each image's own ``(height, width)`` before resizing, ``(n, 2)``; ``None``: no size columns.

    Returns:
        One row per image: ``image.mean.<channel>``, ``image.std.<channel>`` (``L`` for grayscale,
        ``R``/``G``/``B``), ``image.height``, ``image.width``. The training reference of an image
        bundle is :func:`reference` of these columns, so PSI and the KS tests treat them like numbers.
    """
    names = ["L"] if pixels.shape[-1] == 1 else ["R", "G", "B"]
    flat = pixels.reshape(len(pixels), -1, pixels.shape[-1]).astype(np.float32)
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        out[f"image.mean.{name}"] = flat[:, :, j].mean(axis=1).astype(np.float64)
        out[f"image.std.{name}"] = flat[:, :, j].std(axis=1).astype(np.float64)
    if sizes is not None:
        sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
        out["image.height"], out["image.width"] = sizes[:, 0], sizes[:, 1]
    return pd.DataFrame(out)


def training_reference(dataset: Any, train_X: Any, pre: Any) -> dict[str, Any]:
    """A bundle's drift reference: the training split's columns, or for images per-image statistics.

    For images the intensity statistics come from the training split and the sizes from every file
    of the training data (the split keeps no file sizes).
    """
    from kit.data import ImageDataset

    if isinstance(dataset, ImageDataset):
        stats = image_stats(pre.pixels(train_X))
        sizes = pd.DataFrame({"image.height": dataset.sizes[:, 0], "image.width": dataset.sizes[:, 1]})
        return {**reference(stats, dict.fromkeys(stats.columns, "numeric")),
                **reference(sizes, dict.fromkeys(sizes.columns, "numeric"))}
    return reference(train_X, pre.kinds_)
