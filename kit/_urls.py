"""Storage URLs shared by Optuna studies (:mod:`kit.tune`) and the release store (:mod:`kit.release`).

:func:`resolve` turns a storage argument into a canonical spec, :func:`with_driver` picks an
installed database driver, :func:`redact` and :func:`scrub` keep passwords out of logs and errors.
A module of its own, light to import, so the release store and its live-metrics process need not
load the tuning code.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, unquote

from kit.errors import ConfigError

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)@")
_QUERY_PW = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<pw>[^&\s]*)", re.IGNORECASE)



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
