"""Release settings of a server, read once from ``KIT_*`` environment variables and validated."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kit.errors import ConfigError
from kit.release._decision import Thresholds
from kit.release._state import check_percent

RELEASE_POLL_S = 2.0
"""How often each worker reads the release state: a promotion, canary change or rollback is served by
every worker within this many seconds plus the time to load the new version (default)."""

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value not in _TRUE + _FALSE:
        raise ConfigError(f"{name} must be 0 or 1, but got {raw!r}", field=name)
    return value in _TRUE


def _number(name: str, default: float, minimum: float = 0.0, integer: bool = False) -> float:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'}, but got {raw!r}",
                          field=name) from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum:g}, but got {value:g}", field=name)
    return value


@dataclass(frozen=True)
class ReleaseSettings:
    """What a server does about releases (every field is an environment variable).

    Attributes:
        log: ``KIT_LOG`` (default on): log every prediction to the release store.
        store: ``KIT_LOG_URL``: the release store (default SQLite in ``$BENTOML_HOME``).
        queue_size: ``KIT_LOG_QUEUE``: requests buffered for the log writer before dropping.
        retention_days: ``KIT_LOG_RETENTION_DAYS`` (default 30; 0 keeps by age forever).
        max_rows: ``KIT_LOG_MAX_ROWS`` (default 1,000,000; 0 means no bound).
        poll_s: ``KIT_RELEASE_POLL_S``: how often each worker reads the release state.
        challenger: ``KIT_CHALLENGER_TAG``: a challenger fixed by the environment (containers).
        canary_percent: ``KIT_CANARY_PERCENT``: its share of requests.
        shadow: ``KIT_SHADOW=1``: score it in shadow instead.
        shadow_timeout_s: ``KIT_SHADOW_TIMEOUT_MS`` / 1000: slower shadow scores are discarded.
        auto_rollback: ``KIT_AUTO_ROLLBACK=1``: roll a failing challenger back automatically.
        check_s: ``KIT_AUTO_ROLLBACK_S``: how often the automatic rollback checks.
        window_s: ``KIT_ROLLBACK_WINDOW_S``: the window it judges (and ``/performance``'s default).
        thresholds: ``KIT_ROLLBACK_MAX_ERROR_RATE``, ``KIT_ROLLBACK_MAX_DROP``, ``KIT_ROLLBACK_MIN_ROWS``,
            ``KIT_ROLLBACK_MIN_LABELS``.
    """

    log: bool = True
    store: str | None = None
    queue_size: int = 10_000
    retention_days: float = 30.0
    max_rows: int = 1_000_000
    poll_s: float = RELEASE_POLL_S
    challenger: str | None = None
    canary_percent: float | None = None
    shadow: bool = False
    shadow_timeout_s: float = 1.0
    auto_rollback: bool = False
    check_s: float = 30.0
    window_s: float = 3600.0
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_env(cls) -> ReleaseSettings:
        """Read and validate the environment (a ConfigError names the variable)."""
        challenger = (os.environ.get("KIT_CHALLENGER_TAG") or "").strip() or None
        shadow = _flag("KIT_SHADOW", False)
        raw_percent = (os.environ.get("KIT_CANARY_PERCENT") or "").strip()
        percent = None
        if raw_percent:
            try:
                percent = check_percent(raw_percent)
            except ConfigError as exc:
                raise ConfigError(f"KIT_CANARY_PERCENT: {exc.message}", field="KIT_CANARY_PERCENT") from None
        if challenger and percent is None and not shadow:
            raise ConfigError("KIT_CHALLENGER_TAG needs KIT_CANARY_PERCENT (its share of requests) or KIT_SHADOW=1",
                              field="KIT_CHALLENGER_TAG")
        if (percent is not None or shadow) and not challenger:
            raise ConfigError("KIT_CANARY_PERCENT and KIT_SHADOW need KIT_CHALLENGER_TAG (the version on trial)",
                              field="KIT_CHALLENGER_TAG")
        if percent is not None and shadow:
            raise ConfigError("set KIT_CANARY_PERCENT or KIT_SHADOW=1, not both", field="KIT_SHADOW")
        return cls(
            log=_flag("KIT_LOG", True), store=(os.environ.get("KIT_LOG_URL") or "").strip() or None,
            queue_size=int(_number("KIT_LOG_QUEUE", 10_000, 1, integer=True)),
            retention_days=_number("KIT_LOG_RETENTION_DAYS", 30.0),
            max_rows=int(_number("KIT_LOG_MAX_ROWS", 1_000_000, integer=True)),
            poll_s=_number("KIT_RELEASE_POLL_S", RELEASE_POLL_S, 0.05),
            challenger=challenger, canary_percent=percent, shadow=shadow,
            shadow_timeout_s=_number("KIT_SHADOW_TIMEOUT_MS", 1000.0, 1.0) / 1000.0,
            auto_rollback=_flag("KIT_AUTO_ROLLBACK", False), check_s=_number("KIT_AUTO_ROLLBACK_S", 30.0, 0.1),
            window_s=_number("KIT_ROLLBACK_WINDOW_S", 3600.0, 1.0),
            thresholds=Thresholds(
                max_error_rate=_number("KIT_ROLLBACK_MAX_ERROR_RATE", 0.05),
                max_drop=_number("KIT_ROLLBACK_MAX_DROP", 0.05),
                min_rows=int(_number("KIT_ROLLBACK_MIN_ROWS", 100, 1, integer=True)),
                min_labels=int(_number("KIT_ROLLBACK_MIN_LABELS", 100, 1, integer=True))))
