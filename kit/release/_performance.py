"""``/performance``: live quality, errors, latency and agreement per version over a time window.

Reads the prediction log and the feedback labels from the release store, so any worker (or
``kit release status`` on a laptop pointed at the same store) gives the same answer for the same
window. Predictions reach the store within about a second of being made (the log's flush interval).
Counts and error rates cover the whole window exactly, from the counts kept as predictions arrived
(:mod:`kit.release._counts`); live metrics use every labelled prediction in it (up to
:data:`MAX_LABELLED`, found from the feedback table); latency, the estimate, shadow agreement and the
prediction distributions use the :data:`RECENT_ROWS` most recent predictions, so a report's cost is
bounded however busy the service is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kit.errors import require
from kit.release import _blocks as blocks
from kit.release import _counts as counts
from kit.release._db import store_url, tables
from kit.release._live import CBPE, Outputs, estimated_metrics, labelled_metrics
from kit.release._state import Release, _engine, read
from kit.release._stats import ALPHA, homogeneity, interval, ks_two_sample, wilson

MAX_LABELLED = 200_000
"""Most recent labelled predictions read per report (the counts always cover the whole window)."""

RECENT_ROWS = 20_000
"""Most recent predictions read per report for latency, the estimate, shadow pairs and distributions."""

ESTIMATE_ROWS = 5_000
"""Most recent unlabelled predictions the confidence-based estimate uses."""


@dataclass
class Rows:
    """Decoded log rows of one version (prediction id, route, output, label, latency)."""

    ids: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    outputs: list[dict[str, Any] | None] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)

    def extend(self, rows: list[Any]) -> None:
        """Append predictions (prediction id, route, tag, output, latency, label): outputs decoded, labels JSON text."""
        if not rows:
            return
        ids, routes, _, outputs, latency, labels = zip(*rows, strict=True)
        self.ids.extend(ids)
        self.routes.extend(routes)
        self.outputs.extend(outputs)
        self.labels.extend([None if v is None else blocks.loads(v) for v in labels])
        self.latency_ms.extend([float("nan") if x is None else float(x) for x in latency])

    def scored(self) -> tuple[list[int], Outputs | None]:
        """Indices of rows with an output, and those outputs decoded."""
        keep = [i for i, o in enumerate(self.outputs) if o is not None]
        return keep, (Outputs([self.outputs[i] for i in keep]) if keep else None)  # type: ignore[misc]


@dataclass
class Version:
    """One version's predictions in the window: exact counts, its labelled rows and its most recent rows."""

    tag: str
    routes: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    labelled: Rows = field(default_factory=Rows)
    recent: Rows = field(default_factory=Rows)

    @property
    def predictions(self) -> int:
        """Predictions in the window (every route)."""
        return sum(self.routes.values())


@dataclass
class Window:
    """The predictions of one name over a time window, by version."""

    name: str
    since: float
    until: float
    versions: dict[str, Version]
    truncated: bool = False


def load(name: str, url: str | None = None, *, window_s: float = 86400.0, now: float | None = None,
         max_labelled: int = MAX_LABELLED, recent: int = RECENT_ROWS) -> Window:
    """Read ``name``'s predictions of the last ``window_s`` seconds.

    Counts per version and route are exact (:func:`kit.release._counts.window`: the counts kept as
    predictions arrived, and the log rows where the window's ends cut a bucket); the labelled rows
    (found from the feedback table) and the most recent rows are read (both bounded).
    """
    until = time.time() if now is None else now
    since = until - window_s
    versions: dict[str, Version] = {}
    with _engine(url).connect() as conn:
        for (tag, route), (n, failed) in counts.window(conn, name, since, until).items():
            v = versions.setdefault(tag, Version(tag))
            v.routes[route] = n
            v.errors += failed
        rows = _labelled(conn, name, since, until)
        truncated = len(rows) > max_labelled
        for tag, part in _by_tag(reversed(rows[:max_labelled])).items():
            versions.setdefault(tag, Version(tag)).labelled.extend(part)
        labels = {r[0]: r[5] for r in rows}  # every label of the window: the recent rows' need no query of their own
        for tag, part in _by_tag(reversed(_latest(conn, name, since, until, recent, labels))).items():
            versions.setdefault(tag, Version(tag)).recent.extend(part)
    return Window(name, since, until, versions, truncated)


def _labelled(conn: Any, name: str, since: float, until: float) -> list[tuple[Any, ...]]:
    """The labelled predictions of the window, newest first: (id, route, tag, output, latency, label).

    Labels are usually far fewer than predictions, so this walks the feedback table and finds each
    id's block (:func:`kit.release._blocks.locate`) instead of walking the window's predictions.
    """
    out: list[tuple[float, str, tuple[Any, ...]]] = []
    where = blocks.overlapping(name, since, until)
    for pid, found in blocks.locate(conn, fields=("ats", "outputs", "latency_ms"), where=where).items():
        for label, block, values in found:
            if since <= values["ats"] <= until:
                out.append((values["ats"], pid, (pid, block["route"], block["tag"], values["outputs"],
                                                 values["latency_ms"], label)))
    out.sort(key=lambda x: (x[0], x[1]), reverse=True)
    return [x[2] for x in out]


def _latest(conn: Any, name: str, since: float, until: float, limit: int,
            labels: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The window's ``limit`` most recent predictions, newest first: (id, route, tag, output, latency, label).

    ``labels``: every label of the window's predictions by id (:func:`_labelled` has read them all).
    """
    sa = require("sqlalchemy", "serve")
    b = tables().blocks
    q = (sa.select(b.c.route, b.c.tag, b.c.n, b.c.at_last, b.c.ids, b.c.ats, b.c.outputs, b.c.latency_ms)
         .where(*blocks.overlapping(name, since, until)).order_by(b.c.at_last.desc()))
    return [(d["ids"][i], m["route"], m["tag"], d["outputs"][i], d["latency_ms"][i], labels.get(d["ids"][i]))
            for m, d, i in blocks.newest(conn, q, ("outputs", "latency_ms"), limit, since, until)]


def _by_tag(rows: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in rows:
        out.setdefault(r[2], []).append(r)
    return out


def version_report(v: Version, alpha: float = ALPHA) -> dict[str, Any]:
    """Counts, error rate, latency, labelled metrics and the estimate for one version."""
    n = v.predictions
    lo, hi = wilson(v.errors, n, alpha)
    recent = v.recent
    lat = np.array([x for x, o in zip(recent.latency_ms, recent.outputs, strict=True)
                    if o is not None and np.isfinite(x)])
    report: dict[str, Any] = {
        "tag": v.tag, "predictions": n, "routes": dict(sorted(v.routes.items())),
        "errors": v.errors, "error_rate": interval(v.errors / n if n else float("nan"), lo, hi, "Wilson score", n),
        "latency_ms": {"p50": float(np.percentile(lat, 50)) if len(lat) else None,
                       "p99": float(np.percentile(lat, 99)) if len(lat) else None, "rows": len(lat)},
        "labelled": 0, "metrics": {}, "estimated": None}
    keep, out = v.labelled.scored()
    if out is not None:
        y, usable = out.labels([v.labelled.labels[i] for i in keep])
        report["task"] = out.task
        report["labelled"] = int(usable.sum())
        report["unusable_labels"] = int((~usable).sum())
        if usable.any():
            report["metrics"] = labelled_metrics(_subset(out, usable), y[usable], alpha)
    keep, recent_out = recent.scored()
    if recent_out is None:
        return report
    report.setdefault("task", recent_out.task)
    unlabelled = np.array([recent.labels[i] is None for i in keep])
    if recent_out.proba is not None:
        rows = np.flatnonzero(unlabelled)[-ESTIMATE_ROWS:]
        est: dict[str, Any] = {"rows": len(rows), "method": CBPE,
                               "metrics": estimated_metrics(recent_out.proba[rows], alpha) if len(rows) else {}}
        if out is not None and out.proba is not None and report["labelled"]:
            from kit.metrics import expected_calibration_error

            est["ece_on_labelled"] = expected_calibration_error(y[usable], out.proba[usable])
        report["estimated"] = est
    else:
        report["estimated"] = {"rows": int(unlabelled.sum()), "method": None, "metrics": {},
                               "note": "no estimate for regression: the model outputs no uncertainty"}
    return report


def _subset(out: Outputs, mask: np.ndarray) -> Outputs:
    sub = Outputs.__new__(Outputs)
    sub.classes, sub.task = out.classes, out.task
    sub.proba = out.proba[mask] if out.proba is not None else None
    sub.values = out.values[mask] if out.values is not None else None
    sub.predicted = [p for p, m in zip(out.predicted, mask, strict=True) if m]
    return sub


def pairs(champion: Rows, challenger: Rows) -> tuple[list[str], list[int], list[int]]:
    """Shadow pairs: prediction ids both scored, with the row index in each version's rows."""
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
    """How the two versions' recent predictions compare: paired (shadow) and as distributions (both modes)."""
    out: dict[str, Any] = {}
    x, y = champion.recent, challenger.recent
    ids, a, b = pairs(x, y)
    if ids:
        pa = [x.outputs[i]["prediction"] for i in a]  # type: ignore[index]
        pb = [y.outputs[j]["prediction"] for j in b]  # type: ignore[index]
        if isinstance(pa[0], float) and isinstance(pb[0], float):
            diff = np.abs(np.array(pa) - np.array(pb))
            out["paired"] = {"pairs": len(ids), "mean_abs_difference": float(diff.mean()),
                             "max_abs_difference": float(diff.max())}
        else:
            same = sum(str(u) == str(w) for u, w in zip(pa, pb, strict=True))
            lo, hi = wilson(same, len(ids), alpha)
            out["paired"] = {"pairs": len(ids), **interval(same / len(ids), lo, hi, "Wilson score", len(ids)),
                             "disagreements": len(ids) - same}
    ca = [o["prediction"] for o in x.outputs if o is not None]
    cb = [o["prediction"] for o in y.outputs if o is not None]
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
        ``name``, ``window`` (``seconds``, ``since``, ``until``, ``truncated``: more labelled rows than
        :data:`MAX_LABELLED`, the oldest left out), ``release`` (the
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
