"""Optuna storages for :mod:`kit.tune`: resolve a spec, open it fast or fail fast, never leak a password.

Specs:

* ``None`` → a SQLite file ``<run_dir>/optuna.db`` (the embedded default);
* any SQLAlchemy URL (``sqlite:///...``, ``postgresql+psycopg2://user:pw@host/db``, ``mysql+pymysql://...``)
  → :class:`optuna.storages.RDBStorage` with heartbeats and a retry of heartbeat-stale trials. A
  plain ``postgresql://`` URL uses psycopg2 when it is installed, else psycopg 3
  (``postgresql+psycopg://``); a URL whose driver is not installed is refused naming the package;
* ``journal:PATH`` or a path ending in ``.journal`` → Optuna's journal file storage (append-only
  log with a file lock; good for many local processes, no heartbeats);
* a plain path ending in ``.db``/``.sqlite``/``.sqlite3`` → that SQLite file.
"""

from __future__ import annotations

import re
import sqlite3
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from kit.errors import ConfigError, require

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

CONNECT_TIMEOUT_S = 10
"""Seconds a network database gets to accept a connection before the storage is called unreachable."""

SQLITE_TIMEOUT_S = 60
"""Seconds a SQLite writer waits for the file lock held by another worker."""

MAX_RETRY = 3
"""How often a trial whose worker died (stale heartbeat) is re-queued."""

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)@")
_QUERY_PW = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<pw>[^&\s]*)", re.IGNORECASE)


class _WalConnection(sqlite3.Connection):
    """A SQLite connection in write-ahead-log mode with ``synchronous=NORMAL``, set as it opens.

    Optuna commits once per reported epoch; with SQLite's default rollback journal and full sync
    such a commit took 3.6 ms here, in WAL mode 1.1 ms, and readers no longer block the worker
    that writes. A power cut may lose the last commits, never the file's integrity. WAL needs
    the file on a local disk (SQLite's shared-memory index does not work over NFS); many machines
    share a PostgreSQL study instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA journal_mode=WAL")
        self.execute("PRAGMA synchronous=NORMAL")


def _passwords(url: str) -> list[str]:
    found = [m.group("pw") for m in _USERINFO.finditer(url)] + [m.group("pw") for m in _QUERY_PW.finditer(url)]
    out: set[str] = set()
    for pw in found:
        if pw:
            out.update({pw, unquote(pw), quote(unquote(pw), safe="")})
    return sorted(out, key=len, reverse=True)


def redact(url: str) -> str:
    """The storage spec with any password replaced by ``***`` (safe for logs, errors and metadata)."""
    url = _USERINFO.sub(lambda m: m.group("head") + "***@", url)
    return _QUERY_PW.sub(lambda m: m.group("head") + "***", url)


def scrub(text: str, url: str) -> str:
    """``text`` with every form of ``url``'s password replaced by ``***``."""
    for pw in _passwords(url):
        text = text.replace(pw, "***")
    return text


def resolve(storage: str | None, run_dir: str | Path = "runs/tune") -> str:
    """Turn a storage argument into a canonical spec string (an RDB URL or ``journal:PATH``).

    Args:
        storage: ``None``, an SQLAlchemy URL, ``journal:PATH``, ``*.journal`` or a SQLite file path.
        run_dir: Where the default SQLite file lives.

    Returns:
        The spec; relative SQLite and journal paths become absolute so workers agree on them.

    Raises:
        ConfigError: If the argument is none of the accepted forms.
    """
    if storage is None:
        return f"sqlite:///{(Path(run_dir) / 'optuna.db').resolve()}"
    storage = str(storage).strip()
    if storage.startswith("journal:"):
        return f"journal:{Path(storage[len('journal:'):]).resolve()}"
    if "://" in storage:
        if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
            rel = storage[len("sqlite:///"):]
            if rel and rel != ":memory:":
                return f"sqlite:///{Path(rel).resolve()}"
        return with_driver(storage)
    path = Path(storage)
    if path.suffix == ".journal":
        return f"journal:{path.resolve()}"
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return f"sqlite:///{path.resolve()}"
    raise ConfigError(
        f"storage {redact(storage)!r} is not a database URL, journal:PATH, *.journal or *.db path",
        field="storage")


DRIVERS: dict[str, tuple[str, str]] = {
    "postgresql+psycopg2": ("psycopg2", "psycopg2-binary"),
    "postgresql+psycopg": ("psycopg", "psycopg[binary]"),
    "postgresql+pg8000": ("pg8000", "pg8000"),
    "mysql+pymysql": ("pymysql", "PyMySQL"),
    "mysql+mysqldb": ("MySQLdb", "mysqlclient"),
}
"""SQLAlchemy ``dialect+driver`` -> (module to import, pip package)."""

DEFAULT_DRIVERS = {"postgresql": ("postgresql+psycopg2", "postgresql+psycopg"),
                   "mysql": ("mysql+mysqldb", "mysql+pymysql")}
"""The drivers a plain ``dialect://`` URL may use, in order (SQLAlchemy's default first)."""


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def with_driver(url: str) -> str:
    """``url`` with a database driver that is installed, or a ConfigError naming the one to install.

    ``postgresql://`` becomes ``postgresql+psycopg://`` when psycopg2 is missing and psycopg 3 is
    installed; an explicit ``dialect+driver`` must be importable.

    Raises:
        ConfigError: If no driver for the URL's database is installed, with the pip command.
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme in DRIVERS:
        module, package = DRIVERS[scheme]
        if not _importable(module):
            raise ConfigError(f"the storage URL {redact(url)} needs the database driver {module!r}, which is not "
                              f"installed; run: pip install '{package}'", field="storage")
        return url
    if scheme in DEFAULT_DRIVERS:
        for candidate in DEFAULT_DRIVERS[scheme]:
            if _importable(DRIVERS[candidate][0]):
                return url if candidate == DEFAULT_DRIVERS[scheme][0] else candidate + url[len(scheme):]
        packages = " or ".join(f"'{DRIVERS[c][1]}'" for c in DEFAULT_DRIVERS[scheme])
        raise ConfigError(f"the storage URL {redact(url)} needs a {scheme} driver and none is installed; run: "
                          f"pip install {packages} (or name one in the URL, e.g. {DEFAULT_DRIVERS[scheme][0]}://)",
                          field="storage")
    return url


def open_storage(spec: str, heartbeat: int | None = 10) -> BaseStorage:
    """Open the storage of a resolved spec, failing within :data:`CONNECT_TIMEOUT_S` if unreachable.

    Args:
        spec: A spec from :func:`resolve`.
        heartbeat: Heartbeat interval in seconds for RDB storages (``None`` disables); a trial
            whose worker stops beating for twice that long is marked FAIL and re-queued.

    Returns:
        The Optuna storage.

    Raises:
        ConfigError: If the storage cannot be opened; the message never holds the password.
    """
    optuna = require("optuna", "tune")
    if spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(spec[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    kwargs: dict[str, Any] = {}
    if spec.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S, "factory": _WalConnection}
        path_text = spec.split(":///", 1)[-1]
        if path_text and path_text != ":memory:":
            Path(path_text).parent.mkdir(parents=True, exist_ok=True)
    elif spec.startswith(("postgresql", "mysql")):
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
        kwargs["pool_pre_ping"] = True
    retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) \
        or optuna.storages.RetryFailedTrialCallback
    hb: dict[str, Any] = {}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning,
                            message=".*(heartbeat|HeartbeatStale|fail_stale).*")
    if heartbeat:
        key = "heartbeat_stale_trial_callback" if retry_cls.__name__.startswith("RetryHeartbeat") \
            else "failed_trial_callback"
        hb = {"heartbeat_interval": int(heartbeat), "grace_period": 2 * int(heartbeat) + 1,
              key: retry_cls(max_retry=MAX_RETRY)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeat_interval is flagged experimental
            return optuna.storages.RDBStorage(spec, engine_kwargs=kwargs, **hb)  # type: ignore[no-any-return]
    except Exception as exc:  # SQLAlchemy / driver errors: unreachable, bad auth, unknown dialect
        orig = getattr(exc, "orig", None) or exc
        detail = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        raise ConfigError(f"cannot open the Optuna storage {redact(spec)}: {scrub(detail, spec)}",
                          field="storage") from None
