"""What the HTTP service needs beyond wiring: settings, request checks, scoring, drift, auth.

``bentos/service.py`` stays a thin BentoML layer; everything it does is here, as plain
functions and small classes that tests can call without a server:

* :class:`Settings` reads the ``KIT_*`` environment variables once and validates them.
* :func:`check_rows` refuses a request body before it reaches the model (and before adaptive
  batching merges it with other requests), naming the field and the row.
* :class:`ServedModel` wraps a :class:`~kit.bundle.ModelBundle`: it predicts through
  ``bundle.infer`` (the one predict path), scores CSV files, explains, describes itself and
  keeps the rolling drift window.
* :class:`GateMiddleware` is a plain ASGI middleware: bearer-token auth (constant-time), body
  size limits, JSON and schema checks with kit-style 4xx bodies, ``GET`` aliases for the
  ``/metadata`` and ``/drift`` endpoints and a drift-gauge refresh before each ``/metrics`` scrape.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit import drift
from kit._json import json_default, to_json
from kit.errors import ConfigError, DataError, KitError, SchemaError

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
GET_ALIASES = frozenset({"/metadata", "/drift"})
PSI_ALERT = 0.25
DRIFT_MIN_ROWS = 100
"""Below this many recent rows PSI is noisy: ``/drift`` reports it but flags nothing."""


class BadRequestError(KitError):
    """The request body is not what the endpoint reads (not JSON, wrong shape)."""


class UnauthorizedError(KitError):
    """Missing or wrong bearer token."""

    status_code = 401


class NotAvailableError(KitError):
    """The endpoint needs something this model was packaged without (e.g. a SHAP background)."""

    status_code = 409


class PayloadTooLargeError(KitError):
    """The request body is larger than the configured limit."""

    status_code = 413


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, but got {raw!r}", field=name) from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, but got {value}", field=name)
    return value


@dataclass(frozen=True)
class Settings:
    """Service settings, read from ``KIT_*`` environment variables by :meth:`from_env`.

    Attributes:
        api_key: ``KIT_API_KEY``; when set, every endpoint but the health probes needs it.
        batching: ``KIT_BATCHING`` (``0`` turns adaptive batching off).
        max_batch_size: ``KIT_MAX_BATCH_SIZE``, rows per merged batch.
        max_latency_ms: ``KIT_MAX_LATENCY_MS``, the batcher's latency budget.
        max_rows: ``KIT_MAX_ROWS``, rows per ``/predict`` request.
        max_explain_rows: ``KIT_MAX_EXPLAIN_ROWS``, rows per ``/explain`` request.
        max_body_bytes: ``KIT_MAX_BODY_BYTES``, JSON request body limit.
        max_file_bytes: ``KIT_MAX_FILE_BYTES``, ``/predict_file`` upload limit.
        drift_window: ``KIT_DRIFT_WINDOW``, recent rows kept for ``/drift`` (per worker).
        workers: ``KIT_WORKERS``, server worker processes.
        drift_dir: ``KIT_DRIFT_DIR``, where workers share their drift windows. With more than
            one worker and no directory given, a private directory in the temp folder named
            after the workers' parent process; with one worker, nothing is shared.
    """

    api_key: str | None = None
    batching: bool = True
    max_batch_size: int = 512
    max_latency_ms: int = 2000
    max_rows: int = 1000
    max_explain_rows: int = 100
    max_body_bytes: int = 1 << 20
    max_file_bytes: int = 64 << 20
    drift_window: int = 2000
    workers: int = 1
    drift_dir: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """Read and validate the environment (raises :class:`ConfigError` naming the variable)."""
        batching = os.environ.get("KIT_BATCHING", "1").strip().lower()
        if batching not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
            raise ConfigError(f"KIT_BATCHING must be 0 or 1, but got {batching!r}", field="KIT_BATCHING")
        return cls(
            api_key=os.environ.get("KIT_API_KEY") or None,
            batching=batching in ("1", "true", "yes", "on"),
            max_batch_size=_env_int("KIT_MAX_BATCH_SIZE", cls.max_batch_size),
            max_latency_ms=_env_int("KIT_MAX_LATENCY_MS", cls.max_latency_ms),
            max_rows=_env_int("KIT_MAX_ROWS", cls.max_rows),
            max_explain_rows=_env_int("KIT_MAX_EXPLAIN_ROWS", cls.max_explain_rows),
            max_body_bytes=_env_int("KIT_MAX_BODY_BYTES", cls.max_body_bytes, minimum=64),
            max_file_bytes=_env_int("KIT_MAX_FILE_BYTES", cls.max_file_bytes, minimum=64),
            drift_window=_env_int("KIT_DRIFT_WINDOW", cls.drift_window),
            workers=_env_int("KIT_WORKERS", cls.workers),
            drift_dir=os.environ.get("KIT_DRIFT_DIR") or None,
        )


# -- request checks ------------------------------------------------------------------------------
def parse_json(body: bytes) -> Any:
    """Parse a request body; ``NaN``/``Infinity`` literals parse (and are refused later by field)."""
    try:
        return json.loads(body, parse_constant=float)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}", field="body") from None


def check_rows(bundle: ModelBundle, payload: Any, max_rows: int) -> list[dict[str, Any]]:
    """Check a ``{"rows": [{feature: value, ...}, ...]}`` body against the model's schema.

    Stricter than the preprocessor on types (JSON has real types, so a number given as text
    or a boolean in a numeric field is refused); the unseen-category rule follows the
    preprocessor's ``unknown_category`` policy. ``null`` means missing (imputed).

    Returns:
        The rows.

    Raises:
        BadRequestError: If the body is not an object with a ``rows`` list.
        SchemaError: Naming the field and row of the first bad value, or ``rows`` when there
            are more than ``max_rows``.
    """
    if not isinstance(payload, dict) or "rows" not in payload:
        raise BadRequestError('expected a JSON object {"rows": [{feature: value, ...}, ...]}', field="rows")
    extra = [k for k in payload if k != "rows"]
    if extra:
        raise BadRequestError(f"unexpected key {extra[0]!r}; the body holds only 'rows'", field=str(extra[0]))
    rows = payload["rows"]
    if not isinstance(rows, list):
        raise SchemaError(f"'rows' must be a list of objects, got {type(rows).__name__}", field="rows")
    if len(rows) > max_rows:
        raise SchemaError(f"too many rows: {len(rows)} > the limit of {max_rows} per request; "
                          "split the request or use /predict_file", field="rows")
    pre = bundle.preprocessor
    names = pre.feature_names_in_
    known = set(names)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise SchemaError(f"row {i} is a {type(row).__name__}, expected an object of feature: value", row=i)
        for name in names:
            if name not in row:
                raise SchemaError(f"row {i}: missing field {name!r}", field=name, row=i)
        if len(row) != len(names):
            unknown = next(k for k in row if k not in known)
            raise SchemaError(f"row {i}: unknown field {unknown!r}; the model takes: {', '.join(names)}",
                              field=str(unknown), row=i)
        for name in names:
            _check_value(pre.kinds_[name], name, row[name], i, pre.categories_.get(name),
                         pre.unknown_category)
    return rows


def _check_value(kind: str, name: str, value: Any, row: int, categories: list[str] | None,
                 policy: str) -> None:
    if value is None:
        return
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SchemaError(f"row {row}: field {name!r} must be a number or null, got "
                              f"{type(value).__name__} {value!r:.40}", field=name, row=row)
        try:
            finite = math.isfinite(value)
        except OverflowError:
            finite = False
        if not finite:
            raise SchemaError(f"row {row}: field {name!r} must be finite, got {value!r:.40}", field=name, row=row)
        return
    if not isinstance(value, str | int | bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise SchemaError(f"row {row}: field {name!r} must be a category (string) or null, got "
                          f"{type(value).__name__}", field=name, row=row)
    text = str(value)
    if policy == "error" and categories is not None and text not in categories:
        shown = categories if len(categories) <= 20 else [*categories[:20], "..."]
        raise SchemaError(f"row {row}: field {name!r} has unseen category {text!r}; known: {', '.join(shown)}",
                          field=name, row=row)


# -- the served model ----------------------------------------------------------------------------
class ServedModel:
    """A loaded bundle plus what serving adds: output records, CSV scoring, drift window.

    Args:
        bundle: The model.
        tag: Its model-store tag (``name:version``), reported by :meth:`metadata`.
        settings: Service settings.
        metadata: The store entry's labels and metadata (promotion state, force flag).
    """

    def __init__(self, bundle: ModelBundle, tag: str, settings: Settings | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self.bundle = bundle
        self.tag = tag
        self.settings = settings or Settings()
        self.store_info = metadata or {}
        self._window: deque[dict[str, Any]] = deque(maxlen=self.settings.drift_window)
        self._lock = threading.Lock()
        self.seen = 0
        self._shared = SharedWindows.for_settings(self.settings)
        if self._shared is not None:
            threading.Thread(target=self._share_loop, name="kit-drift-share", daemon=True).start()
        _ensure_runtime_registered(bundle)
        bundle.infer(bundle.example(2))  # build the runtime now: errors at startup, not on request 1

    def predict_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One output record per input row, through ``bundle.infer``; rows join the drift window."""
        out = self.bundle.infer(rows)
        with self._lock:
            self._window.extend(rows)
            self.seen += len(rows)
        return prediction_records(out)

    def score_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Predictions for a frame of raw rows (a target column, if present, is ignored)."""
        if self.bundle.target in frame.columns:
            frame = frame.drop(columns=[self.bundle.target])
        return self.bundle.infer(frame).to_frame()

    def predict_csv(self, data: bytes) -> str:
        """Score a CSV upload; returns the predictions as CSV text (one line per input row).

        Raises:
            DataError: If the upload is not a readable CSV or has no rows.
            SchemaError: If its columns or values do not match the schema (names column and row).
        """
        try:
            frame = pd.read_csv(io.BytesIO(data))
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise DataError(f"the upload is not a readable CSV file: {exc}", field="file") from None
        if len(frame) > 0:
            with self._lock:
                records = frame.drop(columns=[self.bundle.target], errors="ignore").to_dict("records")
                self._window.extend({str(k): v for k, v in r.items()} for r in records[-self.settings.drift_window:])
                self.seen += len(frame)
        return self.score_frame(frame).to_csv(index=False)

    def _share_loop(self) -> None:
        """Every SYNC_S seconds, share this worker's window if rows arrived since the last share."""
        assert self._shared is not None
        shared = -1
        while True:
            time.sleep(self._shared.SYNC_S)
            with self._lock:
                if self.seen == shared:
                    continue
                rows, shared = list(self._window), self.seen
            try:
                self._shared.write(rows, shared)
            except OSError as exc:  # a full or vanished disk must not take predictions down
                log.warning("cannot share the drift window in %s: %s", self._shared.directory, exc)

    def explain(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-feature SHAP values and base value from the background stored in the bundle.

        Raises:
            NotAvailableError: If the bundle was packaged without an explanation background.
        """
        if not self.bundle.sections.get("explanation"):
            raise NotAvailableError("this model was packaged without a SHAP background; run "
                                    "kit.explain.attach(bundle, kit.explain.explain(bundle, rows, background=...)) "
                                    "before kit package", field="explanation")
        try:
            from kit import explain as kit_explain
        except ModuleNotFoundError:
            raise NotAvailableError("kit.explain is not installed in this service", field="explanation") from None
        ex = kit_explain.explain(self.bundle, rows)
        targets = ex.target if ex.target is not None else [None] * len(ex.values)
        data = {
            "method": ex.method, "output": ex.output, "feature_names": list(ex.feature_names),
            "additivity_error": ex.additivity_error,
            "rows": [{"base_value": base, "output": out, "class": target,
                      "shap": dict(zip(ex.feature_names, values.tolist(), strict=True))}
                     for base, out, target, values in zip(ex.base_values.tolist(), ex.outputs.tolist(), targets,
                                                          ex.values, strict=True)],
        }
        return _to_json(data)

    def metadata(self) -> dict[str, Any]:
        """Tag, metrics, input schema, runtime, lineage and store labels of the served model."""
        b = self.bundle
        return _to_json({
            "tag": self.tag, "task": b.task, "target": b.target, "labels": b.label_names,
            "schema": b.schema, "metrics": b.metrics, "runtime": b.runtime_info, "lineage": b.lineage,
            "configs": b.configs, "quantization": b.sections.get("quantization"),
            "gate": b.sections.get("gate"), "store": self.store_info,
            "limits": {"max_rows": self.settings.max_rows, "max_explain_rows": self.settings.max_explain_rows,
                       "max_body_bytes": self.settings.max_body_bytes},
            "batching": {"enabled": self.settings.batching, "max_batch_size": self.settings.max_batch_size,
                         "max_latency_ms": self.settings.max_latency_ms},
        })

    def drift(self) -> dict[str, Any]:
        """PSI per feature of the recent-input window against the training reference.

        With several workers the window is every worker's recent rows: this worker's as of now,
        the others' as of their last share (at most :data:`SharedWindows.SYNC_S` seconds old).
        """
        with self._lock:
            rows = list(self._window)
            seen = self.seen
        workers = 1
        if self._shared is not None:
            for other_rows, other_seen in self._shared.read_others():
                rows.extend(other_rows)
                seen += other_seen
                workers += 1
        psi = drift.report(self.bundle.reference, pd.DataFrame(rows)) if rows else {}
        top = max(psi.values(), default=0.0)
        ready = len(rows) >= DRIFT_MIN_ROWS
        return {"window": len(rows), "window_size": self.settings.drift_window * workers, "seen": seen,
                "workers": workers, "ready": ready, "min_rows": DRIFT_MIN_ROWS, "psi": psi, "max_psi": top,
                "threshold": PSI_ALERT,
                "drifted": sorted(k for k, v in psi.items() if v > PSI_ALERT) if ready else []}

    def refresh_gauges(self) -> dict[str, Any]:
        """Recompute drift and publish it as ``kit_drift_psi{feature=...}`` gauges."""
        report = self.drift()
        gauge = _psi_gauge()
        if gauge is not None:
            for name, value in report["psi"].items():
                gauge.labels(feature=name).set(value)
        return report


class SharedWindows:
    """Drift windows of a server's workers, shared through one JSON file per worker in a directory.

    Each worker writes its own window (atomically: temporary file, then rename) from a
    background thread, every :attr:`SYNC_S` seconds when rows have arrived, and reads the others'
    files when ``/drift`` or ``/metrics`` asks, so any worker answers for all. Files of workers
    that are gone (no such process) are skipped and removed.

    Args:
        directory: The shared directory; created private (mode 0700) if missing. A directory
            owned by another user is refused (someone else could plant windows there).
    """

    SYNC_S = 1.0

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if hasattr(os, "getuid") and self.directory.stat().st_uid != os.getuid():
            raise ConfigError(f"drift directory {str(self.directory)!r} belongs to another user", field="KIT_DRIFT_DIR")
        self.pid = os.getpid()

    @classmethod
    def for_settings(cls, settings: Settings) -> SharedWindows | None:
        """The shared windows the settings call for, or ``None`` (one worker, no directory given)."""
        import tempfile

        if settings.drift_dir:
            return cls(settings.drift_dir)
        if settings.workers > 1:  # every worker of one server has the same parent process
            return cls(os.path.join(tempfile.gettempdir(), f"kit-drift-{os.getuid() if hasattr(os, 'getuid') else 0}"
                                                           f"-{os.getppid()}"))
        return None

    def write(self, rows: list[dict[str, Any]], seen: int) -> None:
        """Replace this worker's shared window."""
        path = self.directory / f"{self.pid}.json"
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"pid": self.pid, "seen": seen, "rows": rows}, default=json_default))
        os.replace(tmp, path)

    def read_others(self) -> list[tuple[list[dict[str, Any]], int]]:
        """The other live workers' windows and row counts, as last shared."""
        out = []
        for path in sorted(self.directory.glob("*.json")):
            if not path.stem.isdigit() or int(path.stem) == self.pid:
                continue
            if not _alive(int(path.stem)):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            try:
                data = json.loads(path.read_text(), parse_constant=float)
            except (OSError, ValueError):  # being replaced right now, or gone: skip this once
                continue
            out.append((list(data.get("rows", [])), int(data.get("seen", 0))))
        return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # PermissionError: alive, another user's
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def prediction_records(out: Any) -> list[dict[str, Any]]:
    """Turn a :class:`~kit.bundle.Prediction` into one JSON record per row."""
    if out.values is not None:
        return [{"prediction": float(v)} for v in out.values]
    names = [str(n) for n in out.label_names]
    return [{"prediction": _plain(label), "probabilities": dict(zip(names, map(float, p), strict=True))}
            for label, p in zip(out.labels, out.probabilities, strict=True)]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _to_json(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = to_json(data)
    return out


def _ensure_runtime_registered(bundle: ModelBundle) -> None:
    """Import the module that registers a non-default runtime (``onnxruntime`` lives in kit.quantize)."""
    import importlib

    from kit.runtime import RUNTIMES

    if bundle.runtime_info.get("name") not in RUNTIMES:
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module("kit.quantize")


_GAUGE: list[Any] = []


def _psi_gauge() -> Any:
    """The Prometheus gauge (created once per process, through BentoML's metrics client)."""
    if not _GAUGE:
        try:
            import bentoml
        except ImportError:  # pragma: no cover - serving extra not installed
            return None
        _GAUGE.append(bentoml.metrics.Gauge(
            name="kit_drift_psi", documentation="PSI of recent inputs against the training reference",
            labelnames=["feature"], multiprocess_mode="mostrecent"))
    return _GAUGE[0]


# -- the ASGI gate -------------------------------------------------------------------------------
class GateState:
    """What the middleware shares with the service instance (filled in by :meth:`attach`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: ServedModel | None = None

    def attach(self, bundle: ModelBundle, tag: str, metadata: dict[str, Any] | None = None) -> ServedModel:
        """Wrap ``bundle`` for serving and make it the one the gate checks requests against."""
        self.model = ServedModel(bundle, tag, self.settings, metadata)
        _psi_gauge()
        return self.model


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


def error_body(exc: KitError) -> tuple[int, dict[str, Any]]:
    """Status code and JSON body for a kit error."""
    return exc.status_code, exc.to_dict()


class GateMiddleware:
    """ASGI middleware in front of the BentoML app (see the module docstring).

    Args:
        app: The wrapped ASGI app.
        state: Shared settings and served model.
    """

    def __init__(self, app: ASGIApp, state: GateState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check auth, size and schema, then pass the request on (or answer a kit 4xx)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            self._authorize(scope)
            method = scope.get("method", "GET")
            model = self.state.model
            if method == "GET" and path in GET_ALIASES:
                scope = {**scope, "method": "POST"}
                await self.app(scope, _replay(b"{}", receive), send)
                return
            if method == "GET" and path == "/metrics" and model is not None:
                model.refresh_gauges()
            if method != "POST" or path not in ("/predict", "/explain", "/predict_file", *GET_ALIASES):
                await self.app(scope, receive, send)
                return
            s = self.state.settings
            limit = s.max_file_bytes if path == "/predict_file" else s.max_body_bytes
            body = await _read_body(scope, receive, limit)
            if path in GET_ALIASES:  # no input; a non-object body gets a kit 400, not BentoML's off-schema one
                if body.strip() and not isinstance(parse_json(body), dict):
                    raise BadRequestError("request body must be a JSON object or empty", field="body")
                body = b"{}"
                headers = [(k, v) for k, v in scope.get("headers", []) if k not in (b"content-type", b"content-length")]
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
            elif path == "/predict_file":
                await _check_form(scope, body)
            elif model is not None:
                max_rows = s.max_rows if path == "/predict" else s.max_explain_rows
                check_rows(model.bundle, parse_json(body), max_rows)
                # checked as JSON, so read as JSON whatever Content-Type the client sent
                headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        except KitError as exc:
            status, payload = error_body(exc)
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            await _send_json(send, status, payload, extra)
            return
        await self.app(scope, _replay(body, receive), send)

    def _authorize(self, scope: Scope) -> None:
        key = self.state.settings.api_key
        if not key:
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        expected = b"Bearer " + key.encode()
        if not hmac.compare_digest(given, expected):
            raise UnauthorizedError("missing or wrong API key; send 'Authorization: Bearer <key>'",
                                    field="authorization")


async def _check_form(scope: Scope, body: bytes) -> None:
    """Refuse a malformed multipart upload with a 400 (BentoML would answer 500)."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    async def once() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
        await form.close()
    except Exception as exc:  # starlette raises HTTPException / MultiPartException
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
        raise BadRequestError(f"the upload is not valid multipart/form-data: {detail}", field="file") from None
    if not isinstance(form.get("file"), UploadFile):
        raise BadRequestError("send the CSV as a multipart/form-data file field named 'file'", field="file")


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadRequestError("invalid Content-Length header", field="content-length") from None
            if declared > limit:
                raise PayloadTooLargeError(f"request body of {declared} bytes is over the limit of {limit} bytes",
                                           field="body")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequestError("client disconnected before the body was complete", field="body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes", field="body")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields ``body`` once, then waits on the real one (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
