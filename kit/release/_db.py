"""The release store's database: where it is, its tables, and one engine per process.

One store holds what a release needs to agree on across workers, replicas and the command line:
the release state of each model name (champion stack, challenger, canary share, revision), the
promotion log, the prediction log and the feedback labels. It is SQLite by default
(``$BENTOML_HOME/kit_release.db``, write-ahead log, so readers never wait for the writer) and any
SQLAlchemy URL when replicas on several machines share it (``KIT_LOG_URL``, e.g.
``postgresql://user:pw@host/db``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import ConfigError, require

if TYPE_CHECKING:
    from sqlalchemy import Engine

STORE_ENV = "KIT_LOG_URL"
"""The environment variable naming the store (an SQLAlchemy URL or a SQLite file path)."""

DEFAULT_FILE = "kit_release.db"
"""The default SQLite file inside ``$BENTOML_HOME``."""

SQLITE_BUSY_MS = 30_000
"""How long a SQLite writer waits for another process's write lock before giving up."""

SQLITE_PAGE_BYTES = 16_384
"""The page size of a new SQLite store (SQLite's default is 4 KiB). A block of the prediction log is a
few hundred KiB: with 16 KiB pages the writer spends about half the CPU per prediction (1.4 instead of
2.6 microseconds measured for 800-byte rows), fewer pages to chain, checksum and checkpoint. An
existing file keeps its page size (SQLite changes it only on ``VACUUM`` outside WAL mode)."""

CONNECT_TIMEOUT_S = 10
"""Seconds a network database gets to accept a connection."""

_ENGINES: dict[tuple[str, int], Any] = {}
_TABLES: dict[str, Any] = {}
_LOCK = threading.RLock()


def store_url(url: str | os.PathLike[str] | None = None) -> str:
    """The store's SQLAlchemy URL: ``url``, else ``KIT_LOG_URL``, else SQLite in ``$BENTOML_HOME``.

    A path (``*.db``, ``*.sqlite``, ``*.sqlite3``) means that SQLite file; relative SQLite paths are
    made absolute so every worker opens the same file.

    Raises:
        ConfigError: If the value is neither a database URL nor a SQLite file path.
    """
    from kit._home import bentoml_home
    from kit._urls import resolve

    raw = str(url) if url is not None else (os.environ.get(STORE_ENV) or "").strip()
    if not raw:
        return f"sqlite:///{(bentoml_home() / DEFAULT_FILE).resolve()}"
    if not raw.startswith("journal:") and not raw.endswith(".journal"):
        try:
            return resolve(raw)  # the same URL and SQLite path rules as Optuna storages
        except ConfigError:
            pass
    raise ConfigError(f"{STORE_ENV}={redact(raw)!r} is neither a database URL (sqlite:///PATH, "
                      "postgresql://USER:PASSWORD@HOST/DB) nor a SQLite file path (*.db)", field=STORE_ENV)


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe for logs, errors and ``/metadata``)."""
    from kit._urls import redact as _redact

    return _redact(url)


def engine(url: str) -> Engine:
    """The engine for ``url`` in this process (created once; a forked child makes its own).

    SQLite connections run in WAL mode with ``synchronous=NORMAL`` (a new file gets
    :data:`SQLITE_PAGE_BYTES` pages) and wait up to
    :data:`SQLITE_BUSY_MS` for a lock; network databases get :data:`CONNECT_TIMEOUT_S` to connect.
    Tables are created on first use.
    """
    key = (url, os.getpid())
    with _LOCK:
        found: Engine | None = _ENGINES.get(key)
        if found is not None:
            return found
        sa = require("sqlalchemy", "serve")
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            made = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})
            sa.event.listen(made, "connect", _sqlite_pragmas)
        else:
            args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {}
            try:
                made = sa.create_engine(_driver(url), connect_args=args, pool_pre_ping=True)
            except (ImportError, sa.exc.ArgumentError) as exc:
                raise ConfigError(f"cannot open the release store {redact(url)}: {exc}; install the database "
                                  "driver (PostgreSQL: pip install psycopg2-binary)", field=STORE_ENV) from None
        try:
            tables().metadata.create_all(made, checkfirst=True)
        except sa.exc.SQLAlchemyError as exc:
            made.dispose()
            raise ConfigError(f"cannot open the release store {redact(url)}: {_scrub(str(exc), url)}",
                              field=STORE_ENV) from None
        _ENGINES[key] = made
        out: Engine = made
        return out


def _driver(url: str) -> str:
    """A plain ``postgresql://`` URL with an installed driver: SQLAlchemy's default, else psycopg2."""
    import importlib.util

    if not url.startswith("postgresql://"):
        return url
    for module, scheme in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return scheme + url[len("postgresql"):]
    return url


def _scrub(text: str, url: str) -> str:
    from kit._urls import scrub

    return scrub(text.splitlines()[0] if text else text, url)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_BYTES}")  # before WAL: takes effect on a new, empty file only
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.close()


class Tables:
    """The store's tables (SQLAlchemy Core).

    * ``kit_release``: one row per model name, the current release state, with a ``revision`` that
      every change increments (compare-and-set: a change applies only to the revision it read);
    * ``kit_promotions``: the promotion log, one row per change, unique per (name, revision);
    * ``kit_prediction_blocks``: the prediction log, up to :data:`kit.release._blocks.BLOCK_ROWS`
      predictions of one version and route per row, each column a JSON array (:mod:`kit.release._blocks`),
      keyed by (``route``, ``first_id``): a shadow prediction shares the champion's id;
    * ``kit_prediction_counts``: predictions and errors per model name, version, route and 10-second
      bucket of ``at``, kept by the log's writer in the transaction that inserts them
      (:mod:`kit.release._counts`);
    * ``kit_feedback``: the label that arrived for a prediction id (the latest one wins);
    * ``kit_meta``: markers such as "this JSON-lines promotion log was imported".
    """

    def __init__(self) -> None:
        sa = require("sqlalchemy", "serve")
        self.metadata = md = sa.MetaData()
        text, floating, integer = sa.Text, sa.Float, sa.Integer
        self.release = sa.Table(
            "kit_release", md,
            sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("revision", integer, nullable=False),
            sa.Column("champions", text, nullable=False),      # JSON list, the served version last
            sa.Column("challenger", sa.String(300)),
            sa.Column("mode", sa.String(16)),                  # canary | shadow | NULL
            sa.Column("percent", floating, nullable=False),
            sa.Column("retired", text, nullable=False),        # JSON list of challengers rolled back
            sa.Column("updated", floating, nullable=False))
        self.promotions = sa.Table(
            "kit_promotions", md,
            sa.Column("seq", integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("revision", integer, nullable=False),
            sa.Column("event", sa.String(32), nullable=False),
            sa.Column("entry", text, nullable=False),          # the whole log entry as JSON
            sa.UniqueConstraint("name", "revision", name="kit_promotions_name_revision"))
        self.blocks = sa.Table(
            "kit_prediction_blocks", md,
            sa.Column("route", sa.String(16), primary_key=True),   # champion | canary | shadow
            sa.Column("first_id", sa.String(40), primary_key=True),  # the block's smallest prediction id
            sa.Column("last_id", sa.String(40), nullable=False),    # and its largest
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("tag", sa.String(300), nullable=False),
            sa.Column("at", floating, nullable=False),             # the earliest prediction's time
            sa.Column("at_last", floating, nullable=False),        # the latest
            sa.Column("n", integer, nullable=False),
            sa.Column("errors", integer, nullable=False),
            sa.Column("ids", text, nullable=False),                # JSON arrays, one item per prediction
            sa.Column("ats", text, nullable=False),
            sa.Column("inputs", text, nullable=False),
            sa.Column("outputs", text, nullable=False),            # null where the version failed
            sa.Column("predictions", text, nullable=False),
            sa.Column("latency_ms", text, nullable=False),
            sa.Column("messages", text),                           # the errors; NULL when none failed
            sa.Index("kit_prediction_blocks_name_at", "name", "at_last"))
        self.counts = sa.Table(
            "kit_prediction_counts", md,
            sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),  # floor(at / BUCKET_S)
            sa.Column("tag", sa.String(300), primary_key=True),
            sa.Column("route", sa.String(16), primary_key=True),
            sa.Column("n", integer, nullable=False),
            sa.Column("errors", integer, nullable=False))
        self.feedback = sa.Table(
            "kit_feedback", md,
            sa.Column("prediction_id", sa.String(40), primary_key=True),
            sa.Column("label", text, nullable=False),
            sa.Column("at", floating, nullable=False))
        self.meta = sa.Table(
            "kit_meta", md,
            sa.Column("key", sa.String(400), primary_key=True),
            sa.Column("value", text, nullable=False))


def tables() -> Tables:
    """The table definitions (one instance per process)."""
    with _LOCK:
        if "tables" not in _TABLES:
            _TABLES["tables"] = Tables()
    return _TABLES["tables"]  # type: ignore[no-any-return]


def upsert(conn: Any, table: Any, values: list[dict[str, Any]], keys: list[str], update: list[str]) -> None:
    """Insert rows, replacing the ``update`` columns of rows whose ``keys`` already exist."""
    if not values:
        return
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        import importlib

        insert = importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert
    else:  # a portable fallback: delete, then insert, in the caller's transaction
        sa = require("sqlalchemy", "serve")
        for row in values:
            conn.execute(sa.delete(table).where(*[table.c[k] == row[k] for k in keys]))
        conn.execute(sa.insert(table), values)
        return
    stmt = insert(table)
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update}),
                 values)
