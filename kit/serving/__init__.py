"""What the HTTP service needs beyond wiring: settings, request checks, scoring, drift, auth.

``bentos/service.py`` stays a thin BentoML layer; everything it does is here, as plain
functions and small classes that tests can call without a server:

* :class:`Settings` (``_settings``) reads the ``KIT_*`` environment variables once and validates them.
* :func:`check_rows` (``_rows``, prepared once per model as :class:`RowChecker`) refuses a request body
  before it reaches the model (and before batching merges it with other requests), naming the field and row.
* :class:`ServedModel` (``_model``) wraps a :class:`~kit.bundle.ModelBundle`: it predicts through
  ``bundle.infer`` (the one predict path), scores CSV files, explains, describes itself and
  keeps the rolling drift window.
* :class:`SharedWindows` (``_drift``) shares each worker's drift window so any worker answers for all.
* :func:`start_release` (``_release``) starts the worker's release runtime (:mod:`kit.release`): the
  champion and challenger, routing, prediction ids, the prediction log, ``/feedback`` and ``/performance``.
* :class:`AdmissionMiddleware` (``_admission``) is a plain ASGI middleware: bearer-token auth
  (constant-time), body size limits, JSON and schema checks with kit-style 4xx bodies, ``GET``
  aliases for ``/metadata`` and ``/drift``, a drift-gauge refresh before each ``/metrics`` scrape,
  and kit's fast path for ``POST /predict``.
* :class:`FastPath` (``_fastpath``) answers ``POST /predict`` in front of BentoML's per-request middleware;
  :class:`Batcher` (``_batcher``) merges concurrent requests into model calls, latency first;
  :class:`ServingMetrics` (``_metrics``) counts them for Prometheus.
* :mod:`~kit.serving._codec` is the one JSON codec (orjson when installed).
"""

from __future__ import annotations

from kit.serving._admission import AdmissionMiddleware, AdmissionState
from kit.serving._asgi import error_body
from kit.serving._batcher import Batcher
from kit.serving._drift import DRIFT_MIN_ROWS, PSI_ALERT, SharedWindows, psi_gauge
from kit.serving._errors import (
    BadRequestError,
    MethodNotAllowedError,
    NotAvailableError,
    PayloadTooLargeError,
    UnauthorizedError,
)
from kit.serving._fastpath import FastPath
from kit.serving._metrics import ServingMetrics
from kit.serving._model import ServedModel
from kit.serving._release import request_key, start_release
from kit.serving._rows import RowChecker, check_rows, parse_json
from kit.serving._settings import Settings, cpu_count

__all__ = ["DRIFT_MIN_ROWS", "PSI_ALERT", "AdmissionMiddleware", "AdmissionState", "BadRequestError", "Batcher",
           "FastPath", "MethodNotAllowedError", "NotAvailableError", "PayloadTooLargeError", "RowChecker",
           "ServedModel", "ServingMetrics", "Settings", "SharedWindows", "UnauthorizedError", "check_rows",
           "cpu_count", "error_body", "parse_json", "psi_gauge", "request_key", "start_release"]
