"""Prometheus metrics of kit's ``/predict`` fast path, exported on ``/metrics`` beside BentoML's own.

The fast path answers ``POST /predict`` in front of BentoML's per-request middleware, so its requests
are counted here instead of in ``bentoml_service_request_*``:

* ``kit_predict_requests_total{status}``: answered requests by HTTP status,
* ``kit_predict_request_duration_seconds``: time from the request's arrival to its answer,
* ``kit_predict_batch_rows``: rows per model call (how much the batcher merged).

Children are bound once per status, so recording a request costs two map lookups and two mmap writes.
"""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_CREATED: dict[str, Any] = {}


def metric(kind: str, name: str, documentation: str, **options: Any) -> Any:
    """One metric per process (``None`` without prometheus_client, which BentoML installs).

    Created when the service starts, after BentoML has pointed prometheus_client at its multiprocess
    directory, so every worker's values reach ``/metrics``.
    """
    if name not in _CREATED:
        try:
            import prometheus_client
        except ImportError:  # pragma: no cover - serving extra not installed
            return None
        _CREATED[name] = getattr(prometheus_client, kind)(name=name, documentation=documentation, **options)
    return _CREATED[name]


class ServingMetrics:
    """The fast path's request, latency and batch-size metrics.

    Args:
        register: Create the metrics now (in the worker process); ``False``: a no-op stand-in. Without
            prometheus_client every method is a no-op too.
    """

    def __init__(self, register: bool = True) -> None:
        self._by_status: dict[int, Any] = {}
        self._requests = self._latency = self._rows = None
        if not register:
            return
        self._requests = metric("Counter", "kit_predict_requests", "POST /predict requests answered by kit's "
                                 "fast path, by HTTP status", labelnames=["status"])
        latency = metric("Histogram", "kit_predict_request_duration_seconds", "POST /predict time from arrival "
                          "to answer, in seconds", buckets=LATENCY_BUCKETS)
        rows = metric("Histogram", "kit_predict_batch_rows", "rows per model call of kit's batcher",
                       buckets=ROW_BUCKETS)
        self._latency = latency.observe if latency is not None else None
        self._rows = rows.observe if rows is not None else None

    def request(self, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        if self._requests is None:
            return
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self._requests.labels(status=str(status))
        counter.inc()
        if self._latency is not None:
            self._latency(seconds)

    def batch(self, rows: int) -> None:
        """Record the size of one model call."""
        if self._rows is not None:
            self._rows(rows)
