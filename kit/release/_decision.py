"""The release decision: champion vs challenger on live data, a recommendation, and automatic rollback.

:func:`status` reads the window, reports both versions (:func:`~kit.release.performance`) and
recommends one action, naming the tests it rests on:

* **roll back** when the challenger errs more often than :attr:`Thresholds.max_error_rate`, or
  significantly more often than the champion (two-proportion z-test); or when, with at least
  :attr:`Thresholds.min_labels` labels each, its live metric is below the champion's by more than
  :attr:`Thresholds.max_drop`, or significantly below it (classification: McNemar's exact test on
  shadow pairs, else a two-proportion z-test of accuracy; regression: a paired t-test on shadow
  pairs, else Welch's t-test, of squared errors);
* **promote** when, with enough labels, the challenger is shown non-inferior: its metric is at
  least the champion's minus :attr:`Thresholds.margin` (accuracy points; for RMSE a relative
  margin) by a one-sided test at ``alpha``, and its errors are not worse;
* **keep** otherwise (more data needed, or no significant difference and non-inferiority not shown).

:func:`auto_rollback` applies a "roll back" recommendation as an atomic change that only ends
the trial it judged, recorded in the promotion log with ``auto: true`` and the reasons.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kit.release._performance import Rows, Version, Window, load, pairs, performance
from kit.release._state import _Stale, change, read, rollback_change
from kit.release._stats import ALPHA, mcnemar, two_proportions, welch


@dataclass(frozen=True)
class Thresholds:
    """What the recommendation and the automatic rollback compare against.

    Attributes:
        max_error_rate: A challenger erring on more than this share of its predictions is rolled back.
        max_drop: A challenger whose live accuracy is lower by more than this (points), or whose
            RMSE is higher by more than this share, is rolled back.
        min_rows: Predictions per version before error rates count.
        min_labels: Labelled predictions per version before live metrics count.
        margin: The non-inferiority margin for a promotion (accuracy points; RMSE share).
        alpha: Significance level of every test.
    """

    max_error_rate: float = 0.05
    max_drop: float = 0.05
    min_rows: int = 100
    min_labels: int = 100
    margin: float = 0.01
    alpha: float = ALPHA


def _errors(champ: Version | None, chall: Version, th: Thresholds) -> tuple[list[str], list[dict[str, Any]]]:
    reasons, tests = [], []
    n2 = chall.predictions
    if n2 < th.min_rows:
        return [], []
    rate = chall.errors / n2
    if rate > th.max_error_rate:
        reasons.append(f"roll back: the challenger failed on {rate:.1%} of {n2} predictions, over the "
                       f"threshold of {th.max_error_rate:.1%}")
    if champ is not None and champ.predictions >= th.min_rows:
        test = {"what": "error rate, challenger vs champion",
                **two_proportions(chall.errors, n2, champ.errors, champ.predictions)}
        tests.append(test)
        if test["p_value"] is not None and test["p_value"] < th.alpha and test["difference"] > 0:
            reasons.append(f"roll back: the challenger errs significantly more often than the champion "
                           f"({test['test']}, p={test['p_value']:.2g})")
    return reasons, tests


def _outcomes(v: Rows, idx: list[int] | None = None) -> tuple[np.ndarray, str]:
    """Per labelled row: correctness (classification) or squared error (regression)."""
    rows = idx if idx is not None else list(range(len(v.ids)))
    rows = [i for i in rows if v.outputs[i] is not None and v.labels[i] is not None]
    if not rows:
        return np.array([]), ""
    from kit.release._live import Outputs

    out = Outputs([v.outputs[i] for i in rows])  # type: ignore[misc]
    y, ok = out.labels([v.labels[i] for i in rows])
    if out.proba is not None:
        return np.where(ok, (out.proba.argmax(axis=1) == y).astype(float), np.nan), "accuracy"
    assert out.values is not None
    return np.where(ok, (out.values - y) ** 2, np.nan), "rmse"


def _quality(champ: Version, chall: Version, th: Thresholds) -> tuple[list[str], list[dict[str, Any]], bool]:
    """Reasons to roll back, the tests, and whether non-inferiority is shown."""
    from scipy.stats import norm, t

    ids, a, b = pairs(champ.labelled, chall.labelled)
    paired = False
    if ids:
        x1, metric = _outcomes(champ.labelled, a)
        x2, _ = _outcomes(chall.labelled, b)
        both = np.isfinite(x1) & np.isfinite(x2) if len(x1) == len(x2) and len(x1) else np.array([], bool)
        paired = len(x1) == len(x2) and int(both.sum()) >= th.min_labels
    if paired:
        x1, x2 = x1[both], x2[both]
    else:
        x1, metric = _outcomes(champ.labelled)
        x2, _ = _outcomes(chall.labelled)
        x1, x2 = x1[np.isfinite(x1)], x2[np.isfinite(x2)]
    if min(len(x1), len(x2)) < th.min_labels:
        return [], [], False
    reasons: list[str] = []
    tests: list[dict[str, Any]] = []
    if metric == "accuracy":
        a1, a2 = float(x1.mean()), float(x2.mean())
        if paired:
            test = mcnemar(int(((x2 == 1) & (x1 == 0)).sum()), int(((x1 == 1) & (x2 == 0)).sum()))
        else:
            test = two_proportions(float(x2.sum()), len(x2), float(x1.sum()), len(x1))
        drop, worse = a1 - a2, a2 < a1
        d = x2 - x1 if paired else None
        se = (float(np.std(d, ddof=1)) / math.sqrt(len(d)) if d is not None and len(d) > 1 else
              math.sqrt(a1 * (1 - a1) / len(x1) + a2 * (1 - a2) / len(x2)))
        z = (a2 - a1 + th.margin) / se if se > 0 else (math.inf if a2 - a1 + th.margin > 0 else -math.inf)
        p_ni = float(norm.sf(z))
        desc = f"accuracy {a2:.4f} vs champion {a1:.4f}"
        too_far = drop > th.max_drop
    else:
        m1, m2 = float(np.sqrt(x1.mean())), float(np.sqrt(x2.mean()))
        if paired:
            from kit.release._stats import paired_t

            test = paired_t(x2, x1)
        else:
            test = welch(x2, x1)
        worse = m2 > m1
        scale = (1 + th.margin) ** 2
        d = scale * x1 - x2 if paired else None
        if d is not None:
            se, mean_d, dof = float(np.std(d, ddof=1)) / math.sqrt(len(d)), float(d.mean()), len(d) - 1
        else:
            v1, v2 = scale * scale * np.var(x1, ddof=1) / len(x1), np.var(x2, ddof=1) / len(x2)
            se, mean_d, dof = math.sqrt(v1 + v2), float(scale * x1.mean() - x2.mean()), min(len(x1), len(x2)) - 1
        p_ni = float(t.sf(mean_d / se, dof)) if se > 0 else (0.0 if mean_d > 0 else 1.0)
        desc = f"RMSE {m2:.4g} vs champion {m1:.4g}"
        too_far = m1 > 0 and (m2 - m1) / m1 > th.max_drop
    test = {"what": f"live {metric}, challenger vs champion ({'paired shadow rows' if paired else 'independent rows'})",
            **test, "challenger": desc}
    tests.append(test)
    tests.append({"what": f"non-inferiority of the challenger's {metric} (margin {th.margin:g})",
                  "test": "one-sided z-test" if metric == "accuracy" else "one-sided t-test", "p_value": p_ni})
    if too_far:
        reasons.append(f"roll back: live {desc}, a drop over the threshold of {th.max_drop:g}")
    if worse and test["p_value"] is not None and test["p_value"] < th.alpha:
        reasons.append(f"roll back: live {desc} is significantly worse ({test['test']}, p={test['p_value']:.2g})")
    return reasons, tests, p_ni < th.alpha


def recommend(window: Window, champion: str | None, challenger: str | None,
              th: Thresholds = Thresholds()) -> dict[str, Any]:
    """The recommended action for the trial of ``challenger`` against ``champion`` in ``window``."""
    base: dict[str, Any] = {"thresholds": asdict(th), "tests": []}
    if challenger is None:
        return {**base, "action": "none", "reasons": ["no challenger on trial"]}
    chall = window.versions.get(challenger)
    champ = window.versions.get(champion or "")
    if chall is None or not chall.predictions:
        return {**base, "action": "keep", "reasons": [f"{challenger} made no predictions in the window yet"]}
    reasons, tests = _errors(champ, chall, th)
    shown = False
    if champ is not None:
        more, quality_tests, shown = _quality(champ, chall, th)
        reasons += more
        tests += quality_tests
    if reasons:
        return {**base, "action": "roll back", "reasons": reasons, "tests": tests}
    if shown and not any(t.get("difference", 0) > 0 and (t.get("p_value") or 1) < th.alpha
                         for t in tests if t["what"].startswith("error rate")):
        return {**base, "action": "promote", "tests": tests,
                "reasons": [f"promote: the challenger is non-inferior within {th.margin:g} at alpha {th.alpha:g} "
                            "and errs no more often"]}
    labelled = min(_labelled(champ), _labelled(chall))
    why = (f"keep: {labelled} labelled predictions per version so far, {th.min_labels} needed"
           if labelled < th.min_labels else "keep: no significant difference, and non-inferiority not shown yet")
    return {**base, "action": "keep", "reasons": [why], "tests": tests}


def _labelled(v: Version | None) -> int:
    return 0 if v is None else sum(o is not None for o in v.labelled.outputs)


def status(name: str, url: str | None = None, *, window_s: float = 86400.0, thresholds: Thresholds = Thresholds(),
           now: float | None = None) -> dict[str, Any]:
    """Champion vs challenger on live data with a recommendation (what ``kit release status`` prints)."""
    release = read(name, url)
    window = load(name, url, window_s=window_s, now=now)
    report = performance(name, url, window_s=window_s, alpha=thresholds.alpha, release=release, window=window)
    report["recommendation"] = recommend(window, release.champion, release.challenger, thresholds)
    return report


def auto_rollback(name: str, url: str | None = None, *, window_s: float = 3600.0,
                  thresholds: Thresholds = Thresholds(), by: str = "kit auto-rollback") -> dict[str, Any] | None:
    """Roll the challenger back if the recommendation says so; returns the log entry, or ``None``."""
    release = read(name, url)
    if release.challenger is None:
        return None
    window = load(name, url, window_s=window_s)
    verdict = recommend(window, release.champion, release.challenger, thresholds)
    if verdict["action"] != "roll back":
        return None
    reason = "automatic: " + "; ".join(r.removeprefix("roll back: ") for r in verdict["reasons"])
    try:
        return change(name, rollback_change(reason, auto=True, expect=release.challenger), url, by=by)
    except _Stale:  # another worker (or a person) ended this trial first
        return None
