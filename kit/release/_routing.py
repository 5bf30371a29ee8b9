"""Routing decisions: the sticky canary split, and shadow scoring that never touches the champion's answer.

**Canary split.** A request with a key (the ``X-Request-Key`` header or a ``key`` field beside
``rows``) goes to the challenger when ``bucket(name, key) < percent``, where the bucket is the
keyed BLAKE2b hash of the key, as a number in [0, 100). The same key reaches the same version in
every worker, replica and restart; raising the share from 10 to 20 % keeps the first 10 % where
they were. A request without a key draws at random.

**Shadow.** The champion answers; afterwards the challenger scores the same rows on a small pool
of background threads with a bounded queue. A full queue drops the job, a challenger that raises
is counted as an error, one that takes longer than the timeout is counted as a timeout and its
output discarded; one that hangs holds its thread, and once every thread is held, jobs are
dropped. Each outcome is counted (:attr:`ShadowRunner.counts`); none reaches the client.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

OUTCOMES = ("scored", "error", "timeout", "dropped")


def bucket(name: str, key: str) -> float:
    """The key's place in [0, 100) for model ``name`` (stable across processes and machines)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, key=name.encode()[:64]).digest()
    return int.from_bytes(digest, "big") * 100.0 / 2**64


def to_challenger(name: str, percent: float, key: str | None) -> bool:
    """Whether a request goes to the canary challenger (sticky with a key, random without)."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    if key is None or key == "":
        return random.random() * 100.0 < percent
    return bucket(name, key) < percent


class ShadowRunner:
    """Background challenger scoring with a bounded queue, a timeout and outcome counts.

    Args:
        timeout_s: A shadow score slower than this is counted as a timeout and discarded.
        queue_size: Jobs waiting before new ones are dropped.
        threads: Background threads (each held by a hanging challenger call until it returns).
        on_outcome: Called with the outcome name (for Prometheus counters).
    """

    def __init__(self, timeout_s: float = 1.0, queue_size: int = 64, threads: int = 2,
                 on_outcome: Callable[[str], None] | None = None) -> None:
        self.timeout_s = timeout_s
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.on_outcome = on_outcome
        self._queue: queue.Queue[tuple[Callable[[], Any], Callable[[Any, float], None],
                                       Callable[[str, float], None] | None, float]] = queue.Queue(maxsize=queue_size)
        self._busy: dict[int, float] = {}
        self._threads = [threading.Thread(target=self._run, name=f"kit-shadow-{i}", daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, score: Callable[[], Any], done: Callable[[Any, float], None],
               failed: Callable[[str, float], None] | None = None) -> bool:
        """Queue ``score()``; ``done(output, seconds)`` runs with its output if it returns in time.

        ``failed(outcome, seconds)`` runs when it raised (``error: ...``) or was too slow (``timeout``).

        Returns:
            ``False`` if the job was dropped (queue full).
        """
        try:
            self._queue.put_nowait((score, done, failed, time.monotonic()))
        except queue.Full:
            self._count("dropped")
            return False
        return True

    def hung(self) -> int:
        """Threads held right now by a call running longer than the timeout."""
        now = time.monotonic()
        return sum(now - started > self.timeout_s for started in list(self._busy.values()))

    def idle(self, timeout: float = 5.0) -> bool:
        """Wait until no job is queued or running (tests); ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.empty() and not self._busy:
                return True
            time.sleep(0.01)
        return False

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _run(self) -> None:
        me = threading.get_ident()
        while True:
            score, done, failed, queued = self._queue.get()
            if time.monotonic() - queued > self.timeout_s:  # waited too long: the answer would be stale
                self._count("dropped")
                continue
            started = time.monotonic()
            self._busy[me] = started
            try:
                output = score()
            except Exception as exc:
                self._busy.pop(me, None)
                self._finish(failed, f"error: {type(exc).__name__}: {exc}"[:500], time.monotonic() - started)
                continue
            self._busy.pop(me, None)
            seconds = time.monotonic() - started
            if seconds > self.timeout_s:
                self._finish(failed, "timeout", seconds)
                continue
            self._finish(functools.partial(_deliver, done, output), "scored", seconds)

    def _finish(self, callback: Callable[[str, float], None] | None, outcome: str, seconds: float) -> None:
        self._count(outcome.split(":", 1)[0])
        if callback is None:
            return
        try:
            callback(outcome, seconds)
        except Exception:  # recording must not kill the thread
            log.exception("recording a shadow outcome failed")


def _deliver(done: Callable[[Any, float], None], output: Any, _outcome: str, seconds: float) -> None:
    done(output, seconds)
