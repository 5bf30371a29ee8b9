"""kit's request batcher: merges concurrent ``/predict`` requests into model calls, latency first.

A request that finds the model idle runs on the next turn of the event loop, together with every
request the loop has already taken in; requests that arrive while a call runs wait for it and are
merged into the next one, up to ``max_batch_size`` rows. There is no timer (unless
``KIT_BATCH_WAIT_MS`` sets one): at concurrency 1 nothing waits, and under load the batches grow with
the load. A call runs on the event loop's own thread when the model is free, since a small tabular
model answers a batch in well under a millisecond and a hand-off to a thread would cost more than
that; when something else holds the model (a CSV upload, an explanation, both run by BentoML in a
thread), the call waits for it in a thread, so the event loop never blocks on the lock. An image
model's calls (a conv net over a batch of pictures: milliseconds, not microseconds) always run in a
thread (``offload``), so the loop keeps reading, decoding and answering other requests meanwhile.

Answers do not depend on which requests share a call: the batch goes through ``bundle.infer`` with
one group per request (:meth:`kit.bundle.ModelBundle.infer`), and a runtime whose rows depend on their
batch neighbours (dynamic int8) runs each request's rows on their own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Rows = list[dict[str, Any]]
RunBatch = Callable[[list[Rows]], list[Any]]
"""Maps a list of requests (each a list of rows) to one answer per request."""


class Batcher:
    """Runs model calls for requests submitted on one event loop (see the module docstring).

    Args:
        run: One answer per request for a list of requests; called with ``lock`` held.
        lock: Held while ``run`` runs (the model is used by one thread at a time).
        max_batch_size: Most rows merged into one call (a larger request runs alone).
        wait_ms: How long a request that finds the model idle waits for others (0: none).
        enabled: ``False``: every request is its own call.
        on_call: Told the number of rows of every model call (metrics).
        offload: Run every call in a thread, never on the event loop (image models).
    """

    def __init__(self, run: RunBatch, lock: threading.Lock, *, max_batch_size: int = 512,
                 wait_ms: float = 0.0, enabled: bool = True, on_call: Callable[[int], None] | None = None,
                 offload: bool = False) -> None:
        self._run = run
        self._on_call = on_call
        self._lock = lock
        self.max_batch_size = max_batch_size
        self.wait_s = wait_ms / 1000.0
        self.enabled = enabled
        self.offload = offload
        self._queue: deque[tuple[Rows, asyncio.Future[Any]]] = deque()
        self._scheduled = False
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self.calls = 0
        self.requests = 0

    async def submit(self, rows: Rows) -> Any:
        """The answer for one request's rows (raises what ``run`` raised for them)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((rows, future))
        self._schedule(loop, self.wait_s)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop, delay: float = 0.0) -> None:
        if self._scheduled or self._busy or not self._queue:
            return
        self._scheduled = True
        if delay > 0:
            loop.call_later(delay, self._flush, loop)
        else:
            loop.call_soon(self._flush, loop)

    def _take(self) -> list[tuple[Rows, asyncio.Future[Any]]]:
        batch = [self._queue.popleft()]
        if self.enabled:
            size = len(batch[0][0])
            while self._queue and size + len(self._queue[0][0]) <= self.max_batch_size:
                size += len(self._queue[0][0])
                batch.append(self._queue.popleft())
        return [(rows, future) for rows, future in batch if not future.cancelled()]

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        batch = self._take()
        if not batch:
            self._schedule(loop)
            return
        if not self.offload and self._lock.acquire(blocking=False):
            try:
                answers = self._answers(batch)
            finally:
                self._lock.release()
            _resolve(batch, answers)
            self._schedule(loop)
            return
        self._busy = True  # offloaded, or the model is in use by another thread: run (or wait) there
        self._task = loop.create_task(self._in_thread(loop, batch))  # referenced until done

    async def _in_thread(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Rows, asyncio.Future[Any]]]) -> None:
        def locked() -> list[Any]:
            with self._lock:
                return self._answers(batch)

        try:
            answers = await loop.run_in_executor(None, locked)
            _resolve(batch, answers)
        finally:
            self._busy = False
            self._schedule(loop)

    def _answers(self, batch: list[tuple[Rows, asyncio.Future[Any]]]) -> list[Any]:
        """One answer (or exception) per request; a failed merged call is retried request by request."""
        self.calls += 1
        self.requests += len(batch)
        if self._on_call is not None:
            self._on_call(sum(len(rows) for rows, _ in batch))
        try:
            return list(self._run([rows for rows, _ in batch]))
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
        out: list[Any] = []
        for rows, _ in batch:  # only the request at fault gets the error
            try:
                out.append(self._run([rows])[0])
            except Exception as exc:
                out.append(exc)
        return out


def _resolve(batch: list[tuple[Rows, asyncio.Future[Any]]], answers: list[Any]) -> None:
    for (_, future), answer in zip(batch, answers, strict=True):
        if future.cancelled():
            continue
        if isinstance(answer, Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)
