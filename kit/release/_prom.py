"""Prometheus metrics of a release, per version and route, exported on the service's ``/metrics``.

=============================================  ==========================================================
``kit_release_requests_total``                 requests answered, by ``model``, ``version``, ``route``
``kit_release_errors_total``                   requests the version failed on (a canary failure is answered
                                               by the champion and counted here against the challenger)
``kit_release_latency_seconds``                model time per request (histogram)
``kit_release_predictions_total``              predicted class counts, by ``prediction`` (classification)
``kit_release_prediction_value``               predicted values (histogram; regression)
``kit_release_canary_percent``                 the canary share now served, by ``model`` (0: none)
``kit_release_revision``                       the release-state revision each worker serves
``kit_shadow_total``                           shadow jobs by ``outcome``: scored, error, timeout, dropped
``kit_shadow_compared_total``                  shadow predictions compared with the champion's
``kit_shadow_disagreements_total``             ... that differ (another class; or more than 1 % apart)
``kit_log_dropped_total``                      prediction-log rows dropped, by ``reason``
``kit_live_metric``                            live metric on labelled predictions, by ``role``, ``metric``
``kit_live_metric_estimated``                  the confidence-based estimate for unlabelled ones
``kit_live_labelled``                          labelled predictions in the window
``kit_model_test_metric``                      the version's offline test metric (the baseline)
``kit_release_recommendation``                 1 for the action ``kit release status`` recommends now
``kit_release_reports_total``                  live-metrics reports published (one worker's child process computes
                                               them every ``KIT_AUTO_ROLLBACK_S``), by ``outcome``: ok, error
``kit_drift_statistic``, ``kit_drift_p_value``  KS / chi-squared statistic and corrected p-value per feature
``kit_drift_features_drifted``                 features flagged after the correction (0 below the minimum rows)
=============================================  ==========================================================

Metrics are created in the worker (after BentoML points prometheus_client at its multiprocess
directory), so every worker's counts reach ``/metrics``; gauges keep the most recent value.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

FLUSH_S = 1.0
"""How often request counts reach the Prometheus metrics (they are queued by the request)."""

MAX_PENDING = 100_000
"""Most requests queued for counting; beyond it (the flushing thread stalled) requests go uncounted."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACTIONS = ("none", "keep", "promote", "roll back")
_CREATED: dict[str, Any] = {}


def _metric(kind: str, name: str, documentation: str, labels: tuple[str, ...], **options: Any) -> Any:
    if name not in _CREATED:
        try:
            import prometheus_client
        except ImportError:  # pragma: no cover - serving extra not installed
            return None
        if kind == "Gauge":
            options.setdefault("multiprocess_mode", "mostrecent")
        _CREATED[name] = getattr(prometheus_client, kind)(name=name, documentation=documentation,
                                                          labelnames=list(labels), **options)
    return _CREATED[name]


VERSION = ("model", "version", "route")


class ReleaseMetrics:
    """The release's Prometheus metrics (every method is a no-op without prometheus_client).

    Args:
        name: The model name (label ``model``).
        value_buckets: Histogram buckets for regression predictions (default: Prometheus's).
    """

    def __init__(self, name: str, value_buckets: tuple[float, ...] | None = None) -> None:
        self.name = name
        m = _metric
        self.requests = m("Counter", "kit_release_requests", "requests answered, by version and route", VERSION)
        self.errors = m("Counter", "kit_release_errors", "requests a version failed on", VERSION)
        self.latency = m("Histogram", "kit_release_latency_seconds", "model time per request, in seconds", VERSION,
                         buckets=LATENCY_BUCKETS)
        self.classes = m("Counter", "kit_release_predictions", "predicted classes", (*VERSION, "prediction"))
        self.values = m("Histogram", "kit_release_prediction_value", "predicted values (regression)", VERSION,
                        **({"buckets": value_buckets} if value_buckets else {}))
        self.percent = m("Gauge", "kit_release_canary_percent", "canary share of requests, percent", ("model",))
        self.revision = m("Gauge", "kit_release_revision", "release-state revision served", ("model",))
        self.shadow = m("Counter", "kit_shadow", "shadow jobs by outcome", ("model", "version", "outcome"))
        self.compared = m("Counter", "kit_shadow_compared", "shadow predictions compared", ("model", "version"))
        self.disagree = m("Counter", "kit_shadow_disagreements", "shadow predictions unlike the champion's",
                          ("model", "version"))
        self.dropped = m("Counter", "kit_log_dropped", "prediction-log rows dropped", ("model", "reason"))
        self.live = m("Gauge", "kit_live_metric", "live metric on labelled predictions",
                      ("model", "version", "role", "metric"))
        self.estimated = m("Gauge", "kit_live_metric_estimated", "confidence-based estimate on unlabelled predictions",
                           ("model", "version", "role", "metric"))
        self.labelled = m("Gauge", "kit_live_labelled", "labelled predictions in the window", ("model", "version"))
        self.test_metric = m("Gauge", "kit_model_test_metric", "offline test metric of the version",
                             ("model", "version", "metric"))
        self.action = m("Gauge", "kit_release_recommendation", "1 for the recommended action", ("model", "action"))
        self.reports = m("Counter", "kit_release_reports", "live-metrics reports published", ("model", "outcome"))
        self._children: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._classes: dict[tuple[str, str, str], Any] = {}
        self._pending: tuple[list[Any], ...] = ([], [], [], [], [])  # version, route, seconds, kind, predictions
        if self.requests is not None:
            threading.Thread(target=self._flush_loop, name="kit-release-metrics", daemon=True).start()

    def answered(self, tag: str, route: str, seconds: float, outputs: list[dict[str, Any]] | None) -> None:
        """Count one request answered by ``tag`` on ``route`` with its outputs (``None``: it failed).

        The request only appends its version, route, time and predictions to a queue (one list per
        field: a one-row request adds no object the garbage collector tracks); a background thread
        applies the counts every :data:`FLUSH_S` seconds, so ``/metrics`` lags by at most that and a
        request pays no Prometheus lock or file write.
        """
        if self.requests is None:
            return
        tags, routes, times, kinds, predictions = self._pending
        if len(predictions) >= MAX_PENDING:  # the flushing thread is stalled: count no more than this
            return
        if outputs is None:
            kind, prediction = None, None
        elif len(outputs) == 1:  # outputs with class probabilities are classes, whatever the label's type
            kind, prediction = "probabilities" not in outputs[0], outputs[0]["prediction"]
        else:
            kind = bool(outputs) and "probabilities" not in outputs[0]
            prediction = tuple([o["prediction"] for o in outputs])
        tags.append(tag)
        routes.append(route)
        times.append(seconds)
        kinds.append(kind)
        predictions.append(prediction)  # the last field last: flush reads its length

    def flush(self) -> None:
        """Apply the queued request counts to the Prometheus metrics now, summed per version and route."""
        pending = self._pending
        n = len(pending[-1])
        if not n:
            return
        parts = [field[:n] for field in pending]
        for field in pending:
            del field[:n]
        sums: dict[tuple[str, str], list[Any]] = {}
        for tag, route, seconds, values_ok, prediction in zip(*parts, strict=True):
            agg = sums.get((tag, route))
            if agg is None:
                agg = sums[(tag, route)] = [0, 0, [], {}, []]  # requests, errors, latencies, classes, values
            agg[0] += 1
            if values_ok is None:  # the version failed
                agg[1] += 1
                continue
            agg[2].append(seconds)
            classes, values = agg[3], agg[4]
            for p in prediction if type(prediction) is tuple else (prediction,):
                if values_ok and isinstance(p, float):  # a value (regression) is a float without class probabilities
                    values.append(p)
                else:
                    classes[str(p)] = classes.get(str(p), 0) + 1
        for (tag, route), (n, failed, latencies, classes, values) in sums.items():
            requests, errors, latency, value, labels = self._child(tag, route)
            requests.inc(n)
            if failed:
                errors.inc(failed)
            _observe_many(latency, latencies)
            _observe_many(value, values)
            for prediction, count in classes.items():
                key = (tag, route, prediction)
                child = self._classes.get(key)
                if child is None:
                    child = self._classes[key] = self.classes.labels(**labels, prediction=prediction)
                child.inc(count)

    def _flush_loop(self) -> None:
        while True:
            time.sleep(FLUSH_S)
            try:
                self.flush()
            except Exception:  # metrics must never take the service down
                log.exception("flushing release metrics failed")

    def _child(self, tag: str, route: str) -> tuple[Any, ...]:
        children = self._children.get((tag, route))
        if children is None:
            labels = {"model": self.name, "version": _version(tag), "route": route}
            children = self._children[(tag, route)] = (self.requests.labels(**labels), self.errors.labels(**labels),
                                                       self.latency.labels(**labels), self.values.labels(**labels),
                                                       labels)
        return children

    def shadow_outcome(self, tag: str, outcome: str) -> None:
        """Count one shadow job's outcome."""
        if self.shadow is not None:
            self.shadow.labels(model=self.name, version=_version(tag), outcome=outcome).inc()

    def compare(self, tag: str, compared: int, disagreements: int) -> None:
        """Count shadow predictions compared with the champion's, and those that differ."""
        if self.compared is not None:
            self.compared.labels(model=self.name, version=_version(tag)).inc(compared)
            self.disagree.labels(model=self.name, version=_version(tag)).inc(disagreements)

    def log_dropped(self, rows: int, reason: str) -> None:
        """Count prediction-log rows dropped."""
        if self.dropped is not None:
            self.dropped.labels(model=self.name, reason=reason).inc(rows)

    def served(self, revision: int, percent: float) -> None:
        """Publish the release state this worker serves."""
        if self.revision is not None:
            self.revision.labels(model=self.name).set(revision)
            self.percent.labels(model=self.name).set(percent)

    def test_metrics(self, tag: str, metrics: dict[str, float]) -> None:
        """Publish a version's offline test metrics (the baseline of the live-metric alert)."""
        if self.test_metric is not None:
            for metric, value in metrics.items():
                self.test_metric.labels(model=self.name, version=_version(tag), metric=metric).set(value)

    def report_outcome(self, outcome: str) -> None:
        """Count one live-metrics report: ``ok`` (published) or ``error`` (it could not be computed)."""
        if self.reports is not None:
            self.reports.labels(model=self.name, outcome=outcome).inc()

    def performance(self, report: dict[str, Any]) -> None:
        """Publish live metrics, estimates, label counts and the recommendation from a status report."""
        if self.live is None:
            return
        for v in report["versions"]:
            version = _version(v["tag"])
            self.labelled.labels(model=self.name, version=version).set(v["labelled"])
            for metric, m in v["metrics"].items():
                if m.get("value") is not None:
                    self.live.labels(model=self.name, version=version, role=v["role"], metric=metric).set(m["value"])
            for metric, m in ((v.get("estimated") or {}).get("metrics") or {}).items():
                if m.get("value") is not None:
                    self.estimated.labels(model=self.name, version=version, role=v["role"], metric=metric
                                          ).set(m["value"])
        action = (report.get("recommendation") or {}).get("action")
        for a in ACTIONS:
            self.action.labels(model=self.name, action=a).set(1.0 if a == action else 0.0)



def drift_gauges(tests: dict[str, Any]) -> None:
    """Publish the drift tests of :func:`kit.release.drift_tests` (statistic, corrected p-value, flagged count)."""
    stat = _metric("Gauge", "kit_drift_statistic", "KS or chi-squared statistic vs the training reference",
                   ("feature", "test"))
    if stat is None:
        return
    p_value = _metric("Gauge", "kit_drift_p_value", "multiple-testing corrected p-value", ("feature",))
    drifted = _metric("Gauge", "kit_drift_features_drifted", "features flagged after the correction", ())
    for feature, f in tests["features"].items():
        if f["statistic"] == f["statistic"]:  # not NaN
            stat.labels(feature=feature, test=f["test"]).set(f["statistic"])
        if f["p_adjusted"] == f["p_adjusted"]:
            p_value.labels(feature=feature).set(f["p_adjusted"])
    drifted.set(len(tests["drifted"]))


def _observe_many(histogram: Any, values: list[float]) -> None:
    """Observe many values at once: one increment per bucket and one for the sum.

    prometheus_client's histogram child keeps its non-cumulative bucket counts in ``_buckets`` and its
    bounds in ``_upper_bounds``; with another layout the values are observed one by one.
    """
    if not values:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:  # another client version: one by one
        for v in values:
            histogram.observe(v)
        return
    counts: dict[int, int] = {}
    for v in values:
        i = bisect.bisect_left(bounds, v)
        counts[i] = counts.get(i, 0) + 1
    for i, n in counts.items():
        buckets[i].inc(n)
    total.inc(sum(values))


def _version(tag: str) -> str:
    return tag.split(":", 1)[-1]
