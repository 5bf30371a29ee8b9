"""The live-metrics report and the automatic rollback of a running service, in a child process.

One worker per server (the one holding the leader lock, :func:`kit.release._runtime._leader_lock`)
starts this module as a child process (:class:`Monitor`). The child computes the status report
(:func:`kit.release._decision.status`) every ``check_s`` seconds, first rolling a failing challenger
back when automatic rollback is on (:func:`kit.release._decision.auto_rollback`), and writes each
outcome to its standard output as one JSON line:
``{"report": {...} | null, "rollback": {...} | null, "error": "..." | null}``. The worker's monitor
thread reads the lines and publishes the report's gauges (``kit_live_metric``, ...); after a
rollback it re-reads the release state at once.

Why a process and not a thread of the worker: a report reads and decodes up to
:data:`~kit.release._performance.RECENT_ROWS` predictions (0.16 s of CPU alone). In a thread it held
the worker's GIL in 5 ms slices for 0.3-0.8 s every 30 s, so the event loop waited for it: on
``bench/release.py`` the leader's rounds that met a report answered at twice the p99 latency and
spent 50-70 µs more CPU per request. In its own process it costs only its CPU, scheduled by the OS.

The child exits when its standard input reaches end of file (the worker closed it or died), and
ignores SIGINT (a Ctrl-C of the server reaches the whole process group; the worker ends it).

Run by the worker: ``python -m kit.release._monitor '<json config>'``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import IO, Any

log = logging.getLogger(__name__)


def compute(name: str, url: str | None, *, window_s: float, thresholds: Any, auto_rollback: bool,
            by: str) -> dict[str, Any]:
    """One check: the automatic rollback (when on) and the status report, as the child writes them."""
    from kit.release._decision import auto_rollback as rollback
    from kit.release._decision import status

    out: dict[str, Any] = {"report": None, "rollback": None, "error": None}
    try:
        if auto_rollback:
            out["rollback"] = rollback(name, url, window_s=window_s, thresholds=thresholds, by=by)
        out["report"] = status(name, url, window_s=window_s, thresholds=thresholds)
    except Exception as exc:
        out["error"] = f"cannot compute the live metrics of {name!r}: {exc}"
    return out


class Monitor:
    """The worker's side: starts the child and hands each line it writes to ``on_result``.

    Args:
        name: The model name.
        url: The release store (``None``: the default store, as the worker resolves it).
        check_s: Seconds between checks.
        window_s: The window each report covers.
        thresholds: The rollback thresholds (:class:`~kit.release._decision.Thresholds`).
        auto_rollback: Roll a failing challenger back automatically.
        by: Who the promotion log names for an automatic rollback.
        on_result: Called (in the reading thread) with each decoded line.
    """

    def __init__(self, name: str, url: str | None, *, check_s: float, window_s: float, thresholds: Any,
                 auto_rollback: bool, by: str, on_result: Callable[[dict[str, Any]], None]) -> None:
        self.config = {"name": name, "url": url, "check_s": check_s, "window_s": window_s,
                       "thresholds": asdict(thresholds), "auto_rollback": auto_rollback, "by": by}
        self.on_result = on_result
        self.process: subprocess.Popen[bytes] | None = None

    def run(self) -> int:
        """Start the child and read it until it exits; returns its exit code."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kit.release._monitor", json.dumps(self.config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=os.environ.copy())
        assert self.process.stdout is not None
        for line in self.process.stdout:  # blocks without the GIL until the child writes a line
            try:
                result = json.loads(line)
            except ValueError:
                log.warning("release monitor: unreadable line %r", line[:200])
                continue
            self.on_result(result)
        return self.process.wait()

    def stop(self) -> None:
        """End the child (closing its standard input ends it; terminated if it does not within 5 s)."""
        p = self.process
        if p is None or p.poll() is not None:
            return
        try:
            assert p.stdin is not None
            p.stdin.close()
            p.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            p.terminate()


def _exit_on_eof(stream: IO[bytes]) -> None:
    """End this process when the worker closes our standard input (or dies)."""
    while stream.read(65536):
        pass
    os._exit(0)


def main(argv: list[str]) -> int:
    """The child: check every ``check_s`` seconds, one JSON line each, until standard input closes."""
    from kit.release._decision import Thresholds

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(argv[0])
    threading.Thread(target=_exit_on_eof, args=(sys.stdin.buffer,), daemon=True).start()
    thresholds = Thresholds(**config["thresholds"])
    while True:
        started = time.monotonic()
        result = compute(config["name"], config["url"], window_s=config["window_s"], thresholds=thresholds,
                         auto_rollback=config["auto_rollback"], by=config["by"])
        try:
            sys.stdout.write(json.dumps(result, default=_plain) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):  # the worker is gone
            return 0
        time.sleep(max(0.0, config["check_s"] - (time.monotonic() - started)))


def _plain(value: Any) -> Any:
    """JSON for the numpy scalars and arrays a report may hold."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__} in a report")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
