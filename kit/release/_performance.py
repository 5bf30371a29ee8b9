"""``/performance``: live quality, errors, latency and agreement per version over a time window.

Reads the prediction log and the feedback labels from the release store, so any worker (or
``kit release status`` on a laptop pointed at the same store) gives the same answer for the same
window. Predictions reach the store within about a second of being made (the log's flush interval).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kit.errors import require
from kit.release._db import store_url, tables
from kit.release._live import CBPE, Outputs, estimated_metrics, labelled_metrics
from kit.release._state import Release, _engine, read
from kit.release._stats import ALPHA, homogeneity, interval, ks_two_sample, wilson

MAX_ROWS = 200_000
"""Most recent predictions read for one report (older ones in the window are left out, and it says so)."""

ESTIMATE_ROWS = 5_000
"""Most recent unlabelled predictions the confidence-based estimate uses."""


@dataclass
class Version:
    """One version's logged predictions in the window."""

    tag: str
    ids: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    outputs: list[dict[str, Any] | None] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def scored(self) -> tuple[list[int], Outputs | None]:
        """Indices of rows with an output, and those outputs decoded."""
        keep = [i for i, o in enumerate(self.outputs) if o is not None]
        return keep, (Outputs([self.outputs[i] for i in keep]) if keep else None)  # type: ignore[misc]


@dataclass
class Window:
    """The predictions of one name over a time window, by version."""

    name: str
    since: float
    until: float
    versions: dict[str, Version]
    truncated: bool = False


def load(name: str, url: str | None = None, *, window_s: float = 86400.0, now: float | None = None,
         max_rows: int = MAX_ROWS) -> Window:
    """Read ``name``'s predictions of the last ``window_s`` seconds with their labels."""
    sa = require("sqlalchemy", "serve")
    t = tables()
    until = time.time() if now is None else now
    since = until - window_s
    p, f = t.predictions, t.feedback
    query = (sa.select(p.c.prediction_id, p.c.route, p.c.at, p.c.tag, p.c.output, p.c.latency_ms, p.c.error,
                       f.c.label)
             .select_from(p.outerjoin(f, f.c.prediction_id == p.c.prediction_id))
             .where(p.c.name == name, p.c.at >= since, p.c.at <= until)
             .order_by(p.c.at.desc()).limit(max_rows + 1))
    with _engine(url).connect() as conn:
        rows = conn.execute(query).all()
    truncated = len(rows) > max_rows
    versions: dict[str, Version] = {}
    for r in reversed(rows[:max_rows]):
        v = versions.setdefault(r.tag, Version(r.tag))
        v.ids.append(r.prediction_id)
        v.routes.append(r.route)
        v.outputs.append(json.loads(r.output) if r.output else None)
        v.labels.append(json.loads(r.label) if r.label is not None else None)
        v.latency_ms.append(float(r.latency_ms) if r.latency_ms is not None else float("nan"))
        v.errors += r.error is not None
    return Window(name, since, until, versions, truncated)


def version_report(v: Version, alpha: float = ALPHA) -> dict[str, Any]:
    """Counts, error rate, latency, labelled metrics and the estimate for one version."""
    n = len(v.ids)
    lo, hi = wilson(v.errors, n, alpha)
    lat = np.array([x for x, o in zip(v.latency_ms, v.outputs, strict=True) if o is not None and np.isfinite(x)])
    report: dict[str, Any] = {
        "tag": v.tag, "predictions": n, "routes": {r: v.routes.count(r) for r in sorted(set(v.routes))},
        "errors": v.errors, "error_rate": interval(v.errors / n if n else float("nan"), lo, hi, "Wilson score", n),
        "latency_ms": {"p50": float(np.percentile(lat, 50)) if len(lat) else None,
                       "p99": float(np.percentile(lat, 99)) if len(lat) else None},
        "labelled": 0, "metrics": {}, "estimated": None}
    keep, out = v.scored()
    if out is None:
        return report
    report["task"] = out.task
    y, usable = out.labels([v.labels[i] for i in keep])
    has_label = np.array([v.labels[i] is not None for i in keep])
    labelled = usable & has_label
    report["labelled"] = int(labelled.sum())
    report["unusable_labels"] = int((has_label & ~usable).sum())
    if labelled.any():
        report["metrics"] = labelled_metrics(_subset(out, labelled), y[labelled], alpha)
    if out.proba is not None:
        unlabelled = np.flatnonzero(~has_label)[-ESTIMATE_ROWS:]
        est: dict[str, Any] = {"rows": len(unlabelled), "method": CBPE,
                               "metrics": estimated_metrics(out.proba[unlabelled], alpha) if len(unlabelled) else {}}
        if labelled.any():
            from kit.metrics import expected_calibration_error

            est["ece_on_labelled"] = expected_calibration_error(y[labelled], out.proba[labelled])
        report["estimated"] = est
    else:
        report["estimated"] = {"rows": int((~has_label).sum()), "method": None, "metrics": {},
                               "note": "no estimate for regression: the model outputs no uncertainty"}
    return report


def _subset(out: Outputs, mask: np.ndarray) -> Outputs:
    sub = Outputs.__new__(Outputs)
    sub.classes, sub.task = out.classes, out.task
    sub.proba = out.proba[mask] if out.proba is not None else None
    sub.values = out.values[mask] if out.values is not None else None
    sub.predicted = [p for p, m in zip(out.predicted, mask, strict=True) if m]
    return sub


def pairs(champion: Version, challenger: Version) -> tuple[list[str], list[int], list[int]]:
    """Shadow pairs: prediction ids both scored, with the row index in each version."""
    mine = {pid: i for i, (pid, r, o) in enumerate(zip(champion.ids, champion.routes, champion.outputs, strict=True))
            if r == "champion" and o is not None}
    ids, a, b = [], [], []
    for j, (pid, r, o) in enumerate(zip(challenger.ids, challenger.routes, challenger.outputs, strict=True)):
        if r == "shadow" and o is not None and pid in mine:
            ids.append(pid)
            a.append(mine[pid])
            b.append(j)
    return ids, a, b


def agreement(champion: Version, challenger: Version, alpha: float = ALPHA) -> dict[str, Any]:
    """How the two versions' predictions compare: paired (shadow) and as distributions (canary and shadow)."""
    out: dict[str, Any] = {}
    ids, a, b = pairs(champion, challenger)
    if ids:
        pa = [champion.outputs[i]["prediction"] for i in a]  # type: ignore[index]
        pb = [challenger.outputs[j]["prediction"] for j in b]  # type: ignore[index]
        if isinstance(pa[0], float) and isinstance(pb[0], float):
            diff = np.abs(np.array(pa) - np.array(pb))
            out["paired"] = {"pairs": len(ids), "mean_abs_difference": float(diff.mean()),
                             "max_abs_difference": float(diff.max())}
        else:
            same = sum(str(x) == str(y) for x, y in zip(pa, pb, strict=True))
            lo, hi = wilson(same, len(ids), alpha)
            out["paired"] = {"pairs": len(ids), **interval(same / len(ids), lo, hi, "Wilson score", len(ids)),
                             "disagreements": len(ids) - same}
    ca = [o["prediction"] for o, r in zip(champion.outputs, champion.routes, strict=True) if o is not None]
    cb = [o["prediction"] for o in challenger.outputs if o is not None]
    if ca and cb:
        if isinstance(ca[0], float) and isinstance(cb[0], float):
            out["distribution"] = ks_two_sample(np.array(ca), np.array(cb))
        else:
            out["distribution"] = homogeneity(_counts(ca), _counts(cb))
        out["distribution"]["rows"] = [len(ca), len(cb)]
    return out


def _counts(values: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return counts


def performance(name: str, url: str | None = None, *, window_s: float = 86400.0, now: float | None = None,
                alpha: float = ALPHA, release: Release | None = None, window: Window | None = None) -> dict[str, Any]:
    """Live metrics per version of ``name`` over the last ``window_s`` seconds (what ``GET /performance`` returns).

    Returns:
        ``name``, ``window`` (``seconds``, ``since``, ``until``, ``truncated``), ``release`` (the
        state: champion, challenger, mode, share), ``versions`` (per version: ``role``, counts,
        ``error_rate``, ``latency_ms``, ``labelled``, ``metrics`` with intervals, ``estimated``)
        and ``agreement`` (champion vs challenger, when both predicted in the window).
    """
    release = release or read(name, url)
    window = window or load(name, url, window_s=window_s, now=now)
    roles = {release.champion: "champion", release.challenger: "challenger"}
    versions = []
    for tag, v in window.versions.items():
        report = version_report(v, alpha)
        report["role"] = roles.get(tag, "earlier")
        versions.append(report)
    versions.sort(key=lambda r: ({"champion": 0, "challenger": 1}.get(r["role"], 2), r["tag"]))
    result: dict[str, Any] = {
        "name": name, "store": _redacted(url), "release": release.to_dict(),
        "window": {"seconds": window_s, "since": window.since, "until": window.until, "truncated": window.truncated},
        "alpha": alpha, "versions": versions, "agreement": None}
    champ, chall = window.versions.get(release.champion or ""), window.versions.get(release.challenger or "")
    if champ is not None and chall is not None:
        result["agreement"] = agreement(champ, chall, alpha)
    return result


def _redacted(url: str | None) -> str:
    from kit.release._db import redact

    return redact(store_url(url))
