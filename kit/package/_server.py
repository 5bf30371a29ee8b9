"""Server processes: start ``bentoml serve`` in the background, wait for it, stop it and its workers.

:func:`serve` runs a server in the foreground until its parent is told to stop, by Ctrl-C, SIGTERM
(a process manager) or SIGHUP (a closed terminal); every way stops the server and its workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from kit.errors import KitError, require
from kit.package._bento import BENTOS_DIR
from kit.package._resolve import served


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now (for :func:`start` when any port will do)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def serve_command(target: str = str(BENTOS_DIR), *, port: int = 3000, host: str = "127.0.0.1") -> list[str]:
    """The ``bentoml serve`` command line for a bento tag or the ``bentos/`` directory."""
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port)]


def start(tag: str | None = None, *, port: int = 3000, host: str = "127.0.0.1", bento: str | None = None,
          env: Mapping[str, str] | None = None, wait: float = 120.0, log: Any = None) -> subprocess.Popen[bytes]:
    """Start ``bentoml serve`` in the background and wait until ``/readyz`` answers.

    Args:
        tag: Model to serve (default: latest promoted; ignored for a built bento unless given). A full
            ``name:version`` pins the champion; a name (or nothing) follows the name's promotions,
            canaries and rollbacks while the server runs.
        port: TCP port on ``host``.
        host: Interface (loopback by default).
        bento: A built bento tag to serve instead of the ``bentos/`` source directory.
        env: Extra environment (``KIT_API_KEY``, ``KIT_BATCHING``, ...).
        wait: Seconds to wait for readiness (0: do not wait).
        log: File object for the server's output (default: inherited).

    Raises:
        KitError: If the server exits or is not ready in time.
    """
    full_env = {**os.environ, **(env or {})}
    if tag is not None or bento is None:
        ref = served(tag)  # a name (or nothing) follows the name's promotions; name:version pins it
        full_env["KIT_MODEL_TAG"] = ref.name if ref.follows else ref.tag
    cmd = serve_command(bento or str(BENTOS_DIR), port=port, host=host)
    proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT if log else None,
                            start_new_session=True)
    if wait:
        try:
            wait_ready(f"http://{host}:{port}", wait, proc)
        except BaseException:
            stop(proc)
            raise
    return proc


def wait_ready(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url/readyz`` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise KitError(f"the server exited with code {proc.returncode} before it was ready", field="serve")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise KitError(f"the server at {url} was not ready after {timeout:.0f}s", field="serve")


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a server started by :func:`start`: its process group, then any worker that outlived it.

    BentoML starts its service workers in sessions of their own, so signalling the server's
    process group alone can leave a worker answering on the port; every descendant recorded
    before the stop is killed if it is still alive afterwards.
    """
    psutil = require("psutil", "serve")
    if proc.poll() is not None:
        return
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)
    except ProcessLookupError:
        pass
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a foreground server (and so its workers)."""


class _Stop(Exception):
    """Raised in the main thread when a stop signal arrives."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`_Stop` for the duration (restoring the old handlers).

    A signal whose disposition was "ignore" when the process started (``nohup`` ignores SIGHUP) stays ignored.
    """
    def handler(signum: int, _frame: Any) -> None:
        raise _Stop(signal.Signals(signum).name)

    previous: dict[signal.Signals, Any] = {}
    for sig in STOP_SIGNALS:
        current = signal.getsignal(sig)
        if current is signal.SIG_IGN and sig == signal.SIGHUP:
            continue
        previous[sig] = current
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def serve(tag: str | None = None, *, port: int = 3000, host: str = "127.0.0.1", bento: str | None = None,
          env: Mapping[str, str] | None = None) -> int:
    """Serve in the foreground until stopped (what ``kit serve`` and ``make demo`` run).

    Ctrl-C, SIGTERM and SIGHUP sent to this process stop the server, its workers and this process.

    Returns:
        The server's exit code (0 when stopped by a signal).
    """
    what = f"bento {bento}" if bento else served(tag).tag
    with _stop_on_signals():
        proc = start(tag, port=port, host=host, bento=bento, env=env, wait=0)
        print(f"serving {what} at http://{host}:{port} (Ctrl-C stops)", flush=True)
        try:
            return proc.wait()
        except (_Stop, KeyboardInterrupt):
            stop(proc)
            return 0
        finally:
            stop(proc)  # also when the wait itself failed; a no-op once the server is gone
