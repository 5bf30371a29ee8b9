"""The served model: a loaded bundle plus what serving adds (JSON records, CSV scoring, explain, drift window)."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import pandas as pd

from kit import drift
from kit._json import to_json
from kit.errors import DataError
from kit.release._drift import tests as drift_tests
from kit.release._prom import drift_gauges
from kit.serving import _codec
from kit.serving._drift import DRIFT_MIN_ROWS, PSI_ALERT, SharedWindows, psi_gauge
from kit.serving._errors import NotAvailableError
from kit.serving._images import predict_upload, window_rows
from kit.serving._settings import Settings

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

log = logging.getLogger(__name__)


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
        self.settings = settings or Settings(workers=1)
        self.store_info = metadata or {}
        self._window: deque[dict[str, Any]] = deque(maxlen=self.settings.drift_window)
        self._lock = threading.Lock()  # the drift window
        self.lock = threading.Lock()
        """Held while the model runs: a runtime is used by one thread at a time."""
        self.seen = 0
        self.predict_path = "in process"
        """How the service answers ``/predict`` (set when the service attaches the model; see ``/metadata``)."""
        self._shared = SharedWindows.for_settings(self.settings) if self.settings.drift_window else None
        if self._shared is not None:
            threading.Thread(target=self._share_loop, name="kit-drift-share", daemon=True).start()
        bundle.infer(bundle.example(2))  # build the runtime now: errors at startup, not on request 1

    def predict_requests(self, requests: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        """One list of output records per request, from one ``bundle.infer`` call; rows join the drift window.

        Each request is a group of :meth:`~kit.bundle.ModelBundle.infer`, so its answer equals
        ``bundle.infer(request)`` whichever requests share the call. The caller holds :attr:`lock`
        (kit's batcher does; :meth:`predict_rows` takes it).
        """
        sizes = [len(rows) for rows in requests]
        flat = requests[0] if len(requests) == 1 else [row for rows in requests for row in rows]
        records = self.bundle.infer(flat, groups=sizes).records()
        kept = window_rows(self.bundle, flat) if self.settings.drift_window else ()  # images: their statistics
        with self._lock:
            self._window.extend(kept)
            self.seen += len(flat)
        out, start = [], 0
        for n in sizes:
            out.append(records[start:start + n])
            start += n
        return out

    def predict_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One output record per input row, through ``bundle.infer``; rows join the drift window."""
        with self.lock:
            return self.predict_requests([rows])[0]

    def score_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Predictions for a frame of raw rows (a target column, if present, is ignored)."""
        if self.bundle.target in frame.columns:
            frame = frame.drop(columns=[self.bundle.target])
        with self.lock:
            return self.bundle.infer(frame).to_frame()

    def predict_csv(self, data: bytes) -> str:
        """Score a CSV upload; returns the predictions as CSV text (one line per input row).

        An image model takes one image or a ZIP of images instead and answers ``file``, ``prediction``
        and the probabilities (:func:`kit.serving._images.predict_upload`).

        Raises:
            DataError: If the upload is not a readable CSV (ZIP) or has no rows.
            SchemaError: If its columns or values do not match the schema (names column and row, or the file).
        """
        if self.bundle.kind == "image":  # the model lock is held per batch, not while the files decode
            return predict_upload(self.bundle, data, self.lock)
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
        if self.bundle.explanation is None:
            raise NotAvailableError("this model was packaged without a SHAP background; run "
                                    "kit.explain.attach(bundle, kit.explain.explain(bundle, rows, background=...)) "
                                    "before kit package", field="explanation")
        try:
            from kit import explain as kit_explain
        except ModuleNotFoundError:
            raise NotAvailableError("kit.explain is not installed in this service", field="explanation") from None
        if self.bundle.kind == "image":  # per-pixel maps as nested arrays [channel][y][x]
            with self.lock:
                image_map: dict[str, Any] = to_json(kit_explain.explain_images(self.bundle, rows).to_dict())
            return image_map
        with self.lock:
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
        out: dict[str, Any] = to_json(data)
        return out

    def metadata(self) -> dict[str, Any]:
        """Tag, metrics, input schema, runtime, lineage and store labels of the served model."""
        b = self.bundle
        out: dict[str, Any] = to_json({
            "tag": self.tag, "task": b.task, "target": b.target, "labels": b.label_names,
            "schema": b.schema, "metrics": b.metrics, "runtime": b.runtime_info, "lineage": b.lineage,
            "configs": b.configs, "quantization": b.sections.get("quantization"),
            "gate": b.sections.get("gate"), "store": self.store_info,
            "limits": {"max_rows": self.settings.max_rows, "max_explain_rows": self.settings.max_explain_rows,
                       "max_body_bytes": self.settings.max_body_bytes},
            "batching": {"enabled": self.settings.batching, "max_batch_size": self.settings.max_batch_size,
                         "wait_ms": self.settings.batch_wait_ms, "max_latency_ms": self.settings.max_latency_ms},
            "serving": {"predict": self.predict_path, "workers": self.settings.workers, "json": _codec.ENGINE,
                        "drift_window": self.settings.drift_window,
                        "batch_invariant": self.bundle.runtime.batch_invariant},
        })
        return out

    def drift(self) -> dict[str, Any]:
        """PSI per feature of the recent-input window against the training reference, and KS / chi-squared tests.

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
        frame = pd.DataFrame(rows)
        psi = drift.report(self.bundle.reference, frame) if rows else {}
        top = max(psi.values(), default=0.0)
        ready = len(rows) >= DRIFT_MIN_ROWS
        return {"window": len(rows), "window_size": self.settings.drift_window * workers, "seen": seen,
                "workers": workers, "ready": ready, "min_rows": DRIFT_MIN_ROWS, "psi": psi, "max_psi": top,
                "threshold": PSI_ALERT,
                "drifted": sorted(k for k, v in psi.items() if v > PSI_ALERT) if ready else [],
                "tests": drift_tests(self.bundle.reference, frame, psi=psi, min_rows=DRIFT_MIN_ROWS)}

    def refresh_gauges(self) -> dict[str, Any]:
        """Recompute drift and publish it as ``kit_drift_psi{feature=...}`` gauges."""
        report = self.drift()
        gauge = psi_gauge()
        if gauge is not None:
            for name, value in report["psi"].items():
                gauge.labels(feature=name).set(value)
        drift_gauges(report["tests"])
        return report
