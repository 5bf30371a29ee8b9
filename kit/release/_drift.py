"""Drift tests beyond PSI: per-feature KS (numeric) and chi-squared (categorical) against the training reference.

Each feature of the recent inputs is tested against the reference the bundle stored at train time
(:func:`kit.drift.reference`):

* numeric: the Kolmogorov-Smirnov statistic ``D = sup |F_live - F_ref|`` against the reference CDF,
  which is the training column's 101 percentiles joined linearly (exact at every percentile, so
  ``D`` is within 0.01 of the two-sample statistic on the training rows); the p-value is the
  two-sample one for ``n`` live and ``n_ref`` training rows (``kstwo`` at ``n * n_ref / (n + n_ref)``,
  what SciPy's ``ks_2samp`` uses asymptotically). Bundles made before the percentiles were stored
  compare at their decile edges only, which can only understate ``D``;
* categorical: Pearson's chi-squared test of homogeneity between the training counts (shares
  times ``n_ref``) and the live counts, categories unseen in training in one "other" column
  (so a new category is evidence of drift), columns with an expected count under 5 pooled;
* the p-values of all features are adjusted for multiple testing (Holm by default, which bounds the
  chance of any false alarm at ``alpha``; ``bh`` for Benjamini-Hochberg's false discovery rate);
* below ``min_rows`` live rows nothing is flagged (statistics are still reported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kit.release._stats import ALPHA, CORRECTIONS

if TYPE_CHECKING:  # pandas loads with the first test (the live-metrics process does without it)
    import pandas as pd

MIN_ROWS = 100
"""Live rows needed before a feature can be flagged."""

MIN_EXPECTED = 5.0
"""Chi-squared cells with fewer expected rows are pooled."""


def _ref_cdf(ref: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Knots of the reference CDF: unique values, CDF just below and at each knot."""
    if not ref.get("quantiles"):
        return None
    q = np.asarray(ref["quantiles"], dtype=np.float64)
    p = np.linspace(0, 1, len(q))
    knots, first = np.unique(q, return_index=True)
    last = np.append(first[1:] - 1, len(q) - 1)
    return knots, p[first], p[last]  # a value repeated over several percentiles is a point mass


def ks_reference(ref: dict[str, Any], values: np.ndarray) -> tuple[float, float]:
    """KS statistic and p-value of ``values`` against a numeric reference (see the module docstring)."""
    from scipy.stats import kstwo

    x = np.sort(values[~np.isnan(values)])
    n = len(x)
    if n == 0:
        return float("nan"), float("nan")
    knots = _ref_cdf(ref)
    if knots is not None:
        k, below, at = knots
        # live CDF just below and at every point where either CDF jumps or bends
        points = np.union1d(k, x)
        live_at = np.searchsorted(x, points, side="right") / n
        live_below = np.searchsorted(x, points, side="left") / n
        ref_at = _interp(points, k, below, at, side="at")
        ref_below = _interp(points, k, below, at, side="below")
        d = float(max(np.max(np.abs(live_at - ref_at)), np.max(np.abs(live_below - ref_below))))
    else:  # decile edges only: the CDF is known just below each edge
        edges = np.asarray(ref["edges"], dtype=np.float64)
        cdf = np.cumsum(np.asarray(ref["shares"], dtype=np.float64))[: len(edges)]
        d = float(np.max(np.abs(np.searchsorted(x, edges, side="left") / n - cdf)))
    n_ref = int(ref.get("n") or 0)
    en = n * n_ref / (n + n_ref) if n_ref else n
    return d, float(kstwo.sf(d, max(round(en), 1)))


def _interp(points: np.ndarray, k: np.ndarray, below: np.ndarray, at: np.ndarray, side: str) -> np.ndarray:
    """The reference CDF at ``points`` (``at``: right-continuous value; ``below``: left limit)."""
    i = np.searchsorted(k, points, side="left")
    exact = (i < len(k)) & (k[np.minimum(i, len(k) - 1)] == points)
    out = np.empty(len(points))
    out[points < k[0]] = 0.0
    out[points > k[-1]] = 1.0
    inner = (points > k[0]) & (points < k[-1]) & ~exact
    j = i[inner]  # k[j-1] < point < k[j]: linear between (k[j-1], at) and (k[j], below)
    x0, x1, y0, y1 = k[j - 1], k[j], at[j - 1], below[j]
    out[inner] = y0 + (points[inner] - x0) * (y1 - y0) / (x1 - x0)
    ie = i[exact]
    out[exact] = at[ie] if side == "at" else below[ie]
    return out


def chi2_reference(ref: dict[str, Any], values: pd.Series) -> tuple[float, float]:
    """Chi-squared statistic and p-value of categorical ``values`` against the reference counts."""
    from scipy.stats import chi2_contingency

    cats = [str(c) for c in ref.get("categories", [])]
    present = values.dropna().astype(str)
    n = len(present)
    if n == 0 or not cats:
        return float("nan"), float("nan")
    counts = present.value_counts()
    live = np.array([float(counts.get(c, 0)) for c in cats] + [float(n - counts.reindex(cats).fillna(0).sum())])
    n_ref = float(ref.get("n") or 0) or REF_ROWS_UNKNOWN
    train = np.append(np.asarray(ref["shares"], dtype=np.float64) * n_ref, 0.0)
    table = _pool(np.vstack([train, live]))
    if table.shape[1] < 2:
        return 0.0, 1.0
    res = chi2_contingency(table, correction=False)
    return float(res.statistic), float(res.pvalue)


REF_ROWS_UNKNOWN = 1000.0
"""Training rows assumed for a reference stored without its row count (older bundles)."""


def _pool(table: np.ndarray) -> np.ndarray:
    """Drop empty columns; pool columns whose smaller expected count is under :data:`MIN_EXPECTED`."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return table
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    small = expected.min(axis=0) < MIN_EXPECTED
    if not small.any() or small.all():
        return table
    pooled = table[:, small].sum(axis=1, keepdims=True)
    return np.hstack([table[:, ~small], pooled])


def tests(reference: dict[str, dict[str, Any]], frame: pd.DataFrame, *, psi: dict[str, float] | None = None,
          min_rows: int = MIN_ROWS, alpha: float = ALPHA, correction: str = "holm") -> dict[str, Any]:
    """Test every reference feature present in ``frame`` and flag the drifted ones.

    Returns:
        ``rows``, ``ready`` (at least ``min_rows`` rows), ``alpha``, ``correction``, ``features``
        (per feature: ``test``, ``statistic``, ``p_value``, ``p_adjusted``, ``drifted`` and ``psi``
        when given) and ``drifted`` (names, sorted).
    """
    import pandas as pd

    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {sorted(CORRECTIONS)}, but got {correction!r}")
    features: dict[str, dict[str, Any]] = {}
    for name, ref in reference.items():
        if name not in frame.columns:
            continue
        if ref.get("kind") == "numeric":
            values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
            stat, p = ks_reference(ref, values)
            test = "ks"
        else:
            stat, p = chi2_reference(ref, frame[name])
            test = "chi2"
        features[name] = {"test": test, "statistic": stat, "p_value": p}
        if psi is not None and name in psi:
            features[name]["psi"] = psi[name]
    ready = len(frame) >= min_rows
    finite = {k: v["p_value"] for k, v in features.items() if np.isfinite(v["p_value"])}
    adjusted = CORRECTIONS[correction](finite) if finite else {}
    for name, f in features.items():
        f["p_adjusted"] = adjusted.get(name, float("nan"))
        f["drifted"] = bool(ready and name in adjusted and adjusted[name] < alpha)
    return {"rows": len(frame), "min_rows": min_rows, "ready": ready, "alpha": alpha, "correction": correction,
            "features": features, "drifted": sorted(k for k, f in features.items() if f["drifted"])}
