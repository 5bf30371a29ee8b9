"""The statistics a release decision rests on: intervals, two-sample tests and multiple-testing corrections.

Every function returns plain floats and names its method, so reports can say which test they used.
Intervals are two-sided at ``1 - alpha`` (95 % by default).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ALPHA = 0.05
BOOTSTRAP = 400
"""Resamples of a bootstrap interval (seeded: the same rows give the same interval)."""


def _z(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2))


def interval(value: float, low: float, high: float, method: str, n: int) -> dict[str, Any]:
    """One metric with its interval, the method that made the interval, and the rows it rests on."""
    def clean(x: float) -> float | None:
        return None if x is None or not math.isfinite(x) else float(x)

    return {"value": clean(value), "low": clean(low), "high": clean(high), "method": method, "n": int(n)}


def wilson(successes: float, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Wilson score interval of a proportion (good near 0 and 1 and for small ``n``)."""
    if n <= 0:
        return float("nan"), float("nan")
    z = _z(alpha)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(x: np.ndarray, alpha: float = ALPHA) -> tuple[float, float, float]:
    """Mean and its Student-t interval."""
    from scipy.stats import t

    n = len(x)
    m = float(np.mean(x)) if n else float("nan")
    if n < 2:
        return m, float("nan"), float("nan")
    half = float(t.ppf(1 - alpha / 2, n - 1)) * float(np.std(x, ddof=1)) / math.sqrt(n)
    return m, m - half, m + half


def delong(y: np.ndarray, score: np.ndarray, alpha: float = ALPHA) -> tuple[float, float, float]:
    """ROC-AUC with DeLong's variance (structural components from mid-ranks) and its normal interval."""
    from scipy.stats import rankdata

    pos, neg = score[y == 1], score[y == 0]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return float("nan"), float("nan"), float("nan")
    all_ranks = rankdata(np.concatenate([pos, neg]))
    auc = (all_ranks[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (all_ranks[:m] - rankdata(pos)) / n          # per positive: share of negatives below it
    v01 = 1 - (all_ranks[m:] - rankdata(neg)) / m      # per negative: share of positives above it
    var = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    half = _z(alpha) * math.sqrt(max(var, 0.0))
    return float(auc), max(0.0, float(auc) - half), min(1.0, float(auc) + half)


def bootstrap(stat: Any, arrays: tuple[np.ndarray, ...], alpha: float = ALPHA, resamples: int = BOOTSTRAP,
              seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(*arrays)`` (rows resampled together, seeded)."""
    n = len(arrays[0])
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([stat(*(a[idx] for a in arrays)) for idx in rng.integers(0, n, size=(resamples, n))])
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))


def two_proportions(x1: float, n1: int, x2: float, n2: int) -> dict[str, Any]:
    """Two-sided z-test for a difference of two independent proportions (pooled variance)."""
    from scipy.stats import norm

    if n1 == 0 or n2 == 0:
        return {"test": "two-proportion z-test", "statistic": None, "p_value": None}
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (p1 - p2) / se if se > 0 else 0.0
    return {"test": "two-proportion z-test", "statistic": z, "p_value": float(2 * norm.sf(abs(z))),
            "difference": p1 - p2}


def mcnemar(only_first: int, only_second: int) -> dict[str, Any]:
    """McNemar's exact test on paired outcomes (discordant pairs: right only by the first, only by the second)."""
    from scipy.stats import binomtest

    n = only_first + only_second
    p = float(binomtest(only_first, n, 0.5).pvalue) if n else 1.0
    return {"test": "McNemar exact test (paired)", "statistic": float(only_first - only_second), "p_value": p,
            "discordant": n}


def welch(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Welch's two-sided t-test of the means of two independent samples."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return {"test": "Welch t-test", "statistic": None, "p_value": None}
    res = ttest_ind(a, b, equal_var=False)
    return {"test": "Welch t-test", "statistic": float(res.statistic), "p_value": float(res.pvalue),
            "difference": float(np.mean(a) - np.mean(b))}


def paired_t(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Paired two-sided t-test of the mean difference ``a - b``."""
    from scipy.stats import ttest_rel

    if len(a) < 2:
        return {"test": "paired t-test", "statistic": None, "p_value": None}
    d = a - b
    if np.allclose(d, d[0]):
        return {"test": "paired t-test", "statistic": 0.0, "p_value": 1.0 if d[0] == 0 else 0.0,
                "difference": float(d[0])}
    res = ttest_rel(a, b)
    return {"test": "paired t-test", "statistic": float(res.statistic), "p_value": float(res.pvalue),
            "difference": float(np.mean(d))}


def homogeneity(counts_a: dict[str, int], counts_b: dict[str, int]) -> dict[str, Any]:
    """Chi-squared test that two samples of categories come from one distribution."""
    from scipy.stats import chi2_contingency

    keys = sorted(set(counts_a) | set(counts_b))
    table = np.array([[counts_a.get(k, 0) for k in keys], [counts_b.get(k, 0) for k in keys]], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return {"test": "chi-squared test of homogeneity", "statistic": 0.0, "p_value": 1.0}
    res = chi2_contingency(table, correction=False)
    return {"test": "chi-squared test of homogeneity", "statistic": float(res.statistic),
            "p_value": float(res.pvalue)}


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Two-sample Kolmogorov-Smirnov test of two samples of numbers."""
    from scipy.stats import ks_2samp

    if len(a) == 0 or len(b) == 0:
        return {"test": "two-sample Kolmogorov-Smirnov", "statistic": None, "p_value": None}
    res = ks_2samp(a, b)
    return {"test": "two-sample Kolmogorov-Smirnov", "statistic": float(res.statistic), "p_value": float(res.pvalue)}


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (controls the family-wise error rate)."""
    items = sorted(p_values.items(), key=lambda kv: kv[1])
    m = len(items)
    out: dict[str, float] = {}
    running = 0.0
    for i, (k, p) in enumerate(items):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out


def benjamini_hochberg(p_values: dict[str, float]) -> dict[str, float]:
    """Benjamini-Hochberg adjusted p-values (controls the false discovery rate)."""
    items = sorted(p_values.items(), key=lambda kv: kv[1])
    m = len(items)
    out: dict[str, float] = {}
    running = 1.0
    for i in range(m - 1, -1, -1):
        k, p = items[i]
        running = min(running, p * m / (i + 1))
        out[k] = min(1.0, running)
    return out


CORRECTIONS = {"holm": holm, "bh": benjamini_hochberg}
"""Multiple-testing corrections by name."""
