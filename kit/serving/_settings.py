"""Service settings, read once from ``KIT_*`` environment variables and validated."""

from __future__ import annotations

import os
from dataclasses import dataclass

from kit.errors import ConfigError


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
        metrics_key: ``KIT_METRICS_KEY``; a read-only key that opens ``/metrics`` and nothing else
            (for Prometheus, so it never holds the key that can predict or send feedback).
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
    metrics_key: str | None = None
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
            metrics_key=os.environ.get("KIT_METRICS_KEY") or None,
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
