"""Drift across workers: each worker shares its recent-input window through a private folder; gauges for Prometheus."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import ConfigError
from kit.serving import _codec
from kit.serving._errors import BadRequestError
from kit.serving._metrics import metric

if TYPE_CHECKING:
    from kit.serving._settings import Settings

PSI_ALERT = 0.25
DRIFT_MIN_ROWS = 100
"""Below this many recent rows PSI is noisy: ``/drift`` reports it but flags nothing."""


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
        tmp.write_bytes(_codec.dumps({"pid": self.pid, "seen": seen, "rows": rows}))
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
                data = _codec.loads(path.read_bytes())
            except (OSError, BadRequestError):  # being replaced right now, or gone: skip this once
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


def psi_gauge() -> Any:
    """The ``kit_drift_psi{feature}`` gauge (created once per process, ``None`` without prometheus_client)."""
    return metric("Gauge", "kit_drift_psi", "PSI of recent inputs against the training reference",
                   labelnames=["feature"], multiprocess_mode="mostrecent")
