"""Service settings, read once from ``KIT_*`` environment variables and validated."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.errors import ConfigError

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def cpu_count() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in _TRUE + _FALSE:
        raise ConfigError(f"{name} must be 0 or 1, but got {raw!r}", field=name)
    return raw in _TRUE


def _env_float(name: str, default: float) -> float:
    value: float = _env_number(name, default, float, minimum=0)
    if value > 1000:
        raise ConfigError(f"{name} must be <= 1000, but got {value}", field=name)
    return value


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    value: int = _env_number(name, default, int, minimum)
    return value


def _env_number(name: str, default: Any, kind: type, minimum: float) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what}, but got {raw!r}", field=name) from None
    if not value >= minimum:  # also refuses nan
        raise ConfigError(f"{name} must be >= {minimum}, but got {value}", field=name)
    return value


@dataclass(frozen=True)
class Settings:
    """Service settings, read from ``KIT_*`` environment variables by :meth:`from_env`.

    Attributes:
        api_key: ``KIT_API_KEY``; when set, every endpoint but the health probes needs it.
        metrics_key: ``KIT_METRICS_KEY``; a read-only key that opens ``/metrics`` and nothing else
            (for Prometheus, so it never holds the key that can predict or send feedback).
        batching: ``KIT_BATCHING`` (``0``: every request is its own model call).
        max_batch_size: ``KIT_MAX_BATCH_SIZE``, rows per merged model call.
        batch_wait_ms: ``KIT_BATCH_WAIT_MS``, how long kit's batcher holds a request that finds the
            model idle, waiting for others to merge with (default 0: it runs at once, and requests
            that arrive while the model runs are merged into the next call).
        fast_path: ``KIT_FAST_PATH`` (``0``: ``/predict`` goes through BentoML's own handler and its
            adaptive batcher, with ``max_latency_ms``, instead of kit's).
        max_latency_ms: ``KIT_MAX_LATENCY_MS``, BentoML's batcher latency budget (``KIT_FAST_PATH=0``).
        max_rows: ``KIT_MAX_ROWS``, rows per ``/predict`` request.
        max_explain_rows: ``KIT_MAX_EXPLAIN_ROWS``, rows per ``/explain`` request.
        max_body_bytes: ``KIT_MAX_BODY_BYTES``, JSON request body limit.
        max_file_bytes: ``KIT_MAX_FILE_BYTES``, ``/predict_file`` upload limit.
        drift_window: ``KIT_DRIFT_WINDOW``, recent rows kept for ``/drift`` (per worker; ``0`` turns it off).
        workers: ``KIT_WORKERS``, server worker processes (default: one per CPU, :func:`cpu_count`).
        decode_threads: ``KIT_DECODE_THREADS``, threads per worker that decode an image model's requests
            (base64, Pillow, resizing) off the event loop; each request is decoded by one thread, so
            this many requests decode at once per worker and a slow one holds one thread, not the loop.
        drift_dir: ``KIT_DRIFT_DIR``, where workers share their drift windows. With more than
            one worker and no directory given, a private directory in the temp folder named
            after the workers' parent process; with one worker, nothing is shared.
    """

    api_key: str | None = None
    metrics_key: str | None = None
    batching: bool = True
    max_batch_size: int = 512
    batch_wait_ms: float = 0.0
    fast_path: bool = True
    max_latency_ms: int = 2000
    max_rows: int = 1000
    max_explain_rows: int = 100
    max_body_bytes: int = 1 << 20
    max_file_bytes: int = 64 << 20
    drift_window: int = 2000
    workers: int = field(default_factory=cpu_count)
    decode_threads: int = 4
    drift_dir: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """Read and validate the environment (raises :class:`ConfigError` naming the variable)."""
        return cls(
            api_key=os.environ.get("KIT_API_KEY") or None,
            metrics_key=os.environ.get("KIT_METRICS_KEY") or None,
            batching=_env_bool("KIT_BATCHING", cls.batching),
            max_batch_size=_env_int("KIT_MAX_BATCH_SIZE", cls.max_batch_size),
            batch_wait_ms=_env_float("KIT_BATCH_WAIT_MS", cls.batch_wait_ms),
            fast_path=_env_bool("KIT_FAST_PATH", cls.fast_path),
            max_latency_ms=_env_int("KIT_MAX_LATENCY_MS", cls.max_latency_ms),
            max_rows=_env_int("KIT_MAX_ROWS", cls.max_rows),
            max_explain_rows=_env_int("KIT_MAX_EXPLAIN_ROWS", cls.max_explain_rows),
            max_body_bytes=_env_int("KIT_MAX_BODY_BYTES", cls.max_body_bytes, minimum=64),
            max_file_bytes=_env_int("KIT_MAX_FILE_BYTES", cls.max_file_bytes, minimum=64),
            drift_window=_env_int("KIT_DRIFT_WINDOW", cls.drift_window, minimum=0),
            workers=_env_int("KIT_WORKERS", cpu_count()),
            decode_threads=_env_int("KIT_DECODE_THREADS", cls.decode_threads),
            drift_dir=os.environ.get("KIT_DRIFT_DIR") or None,
        )
