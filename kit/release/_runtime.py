"""The release inside a running service: which version answers a request, logging, shadow, live state.

One :class:`ReleaseRuntime` per worker. Its :class:`View` (champion, challenger, mode, share,
revision) is replaced as a whole when the release state changes, so a request sees one consistent
view. A background thread reads the state from the release store every ``KIT_RELEASE_POLL_S``
seconds (2 by default), loads a version it has not loaded yet, then swaps the view: a promotion,
canary change or rollback is served by every worker within the poll interval plus the load time,
with no restart. Another thread refreshes the live metrics (and, with ``KIT_AUTO_ROLLBACK=1``,
rolls a failing challenger back) every ``KIT_AUTO_ROLLBACK_S`` seconds, in one worker per server
(the one holding a lock file named after the server; the others take over if it dies).

The serving layer supplies a ``loader``: a tag and its role (``champion`` or ``challenger``) in, a
:class:`Target` out (the loaded model, and the batched coroutine that answers a request with it);
and ``on_view``, told of every new view (so ``/metadata``, ``/explain`` and the schema checks follow
the champion).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kit.release._log import Ids, PredictionLog
from kit.release._prom import ReleaseMetrics
from kit.release._routing import ShadowRunner, to_challenger
from kit.release._settings import ReleaseSettings
from kit.release._state import Release, read

log = logging.getLogger(__name__)

Rows = list[dict[str, Any]]


@dataclass
class Target:
    """One loaded version.

    Attributes:
        tag: ``name:version``.
        model: The served model (``predict_rows(rows) -> records``, ``bundle``).
        submit: The batched way to answer a request on the event loop (``None``: call ``model.predict_rows``).
        batcher: The serving layer's batcher behind ``submit``, if any.
        header: The ``X-Kit-Model: name:version`` response header naming it (set from ``tag``).
    """

    tag: str
    model: Any
    submit: Callable[[Rows], Awaitable[list[dict[str, Any]]]] | None = None
    batcher: Any = None
    header: tuple[bytes, bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.header = (b"x-kit-model", self.tag.encode())


@dataclass(frozen=True)
class View:
    """What one request sees: swapped whole when the release changes."""

    revision: int
    champion: Target
    challenger: Target | None = None
    mode: str | None = None
    percent: float = 0.0

    def describe(self) -> dict[str, Any]:
        """The view as JSON (``/release``)."""
        return {"revision": self.revision, "champion": self.champion.tag,
                "challenger": self.challenger.tag if self.challenger else None, "mode": self.mode,
                "percent": self.percent}


class ReleaseRuntime:
    """Routing, logging, shadow scoring and live state of one model name in one worker.

    Args:
        champion: The version loaded at startup.
        settings: Release settings (``KIT_*``).
        loader: Loads a version by tag and role (called in a background thread).
        pinned: The champion is fixed (``KIT_MODEL_TAG`` with a version, or a bento's baked tag):
            promotions change the challenger only.
        on_view: Called with each new view (in the thread that swapped it).
        start: Start the background threads (tests may drive :meth:`refresh` themselves).
    """

    def __init__(self, champion: Target, settings: ReleaseSettings, loader: Callable[[str, str], Target], *,
                 pinned: bool = False, on_view: Callable[[View], None] | None = None, start: bool = True) -> None:
        self.name = champion.tag.split(":", 1)[0]
        self.settings = settings
        self.loader = loader
        self.on_view = on_view
        self.pinned = pinned
        self.view = View(0, champion)
        self.metrics = ReleaseMetrics(self.name)
        self.ids = Ids()
        self.log = (PredictionLog(settings.store, queue_size=settings.queue_size,
                                  retention_days=settings.retention_days, max_rows=settings.max_rows,
                                  on_drop=self.metrics.log_dropped) if settings.log else None)
        self.shadow_runner = ShadowRunner(timeout_s=settings.shadow_timeout_s, on_outcome=self._shadow_outcome)
        self.last_error: str | None = None
        self.last_report: dict[str, Any] | None = None
        self.monitor: Any = None  # the live-metrics child process's handle, in the worker that runs it
        self._loaded: dict[tuple[str, str], Target] = {(champion.tag, "champion"): champion}
        self._failed: dict[str, str] = {}
        self.metrics.test_metrics(champion.tag, _test_metrics(champion))
        self.refresh()
        if start:
            threading.Thread(target=self._poll, name="kit-release-poll", daemon=True).start()
            threading.Thread(target=self._monitor, name="kit-release-monitor", daemon=True).start()

    # -- per request --------------------------------------------------------------------------
    async def answer(self, rows: Rows, key: str | None, encode: Callable[[list[dict[str, Any]]], bytes],
                     body: bytes | None = None) -> tuple[bytes, Target]:
        """Route, predict, number, count and log one request; returns the answer's JSON and the version that answered.

        A canary challenger that fails is counted and logged against it, and the champion answers
        the request instead; a champion that fails raises (the caller answers 500). ``encode`` (the
        answer's JSON encoder) encodes the records, each with its ``prediction_id``, and the log takes
        a one-row request's output from that JSON instead of encoding it again; ``body``, the request
        body the rows were parsed from, lets the log take their JSON from it
        (:meth:`~kit.release._log.PredictionLog.record`). Every request passes here, so :meth:`choose`
        and :meth:`record` are written out inline.
        """
        view = self.view
        target, route = view.champion, "champion"
        if view.mode == "canary" and view.challenger is not None and to_challenger(self.name, view.percent, key):
            target, route = view.challenger, "canary"
        start = time.perf_counter()
        try:  # the serving layer's batcher, awaited directly (one coroutine fewer per request)
            records = await (target.submit(rows) if target.submit is not None else _run(target, rows))
        except Exception as exc:
            self.record(target, route, self.ids.take(len(rows)), rows, None, time.perf_counter() - start,
                        f"error: {type(exc).__name__}: {exc}"[:500], body)
            if route != "canary":
                raise
            log.warning("release %s: canary %s failed (%s); the champion answered", self.name, target.tag, exc)
            target, route, start = view.champion, "champion", time.perf_counter()
            records = await _run(target, rows)
        seconds = time.perf_counter() - start
        if len(records) == 1:  # the common case, without a loop
            ids: Sequence[str] = (self.ids.one(),)
            records[0]["prediction_id"] = ids[0]
        else:
            ids = self.ids.take(len(records))
            for record, pid in zip(records, ids, strict=True):
                record["prediction_id"] = pid
        data = encode(records)
        try:  # record(), inline: metrics or the log must never fail a request
            self.metrics.answered(target.tag, route, seconds, records)
            if self.log is not None:
                self.log.record(self.name, target.tag, route, ids, rows, records, seconds * 1000.0, None, body, data)
        except Exception:
            log.exception("recording a prediction failed")
        if view.mode == "shadow":
            self.shadow(view, rows, ids, records, body)
        return data, target

    def choose(self, key: str | None) -> tuple[View, Target, str]:
        """The view, the version that answers, and the route (``champion`` or ``canary``)."""
        v = self.view
        if v.mode == "canary" and v.challenger is not None and to_challenger(self.name, v.percent, key):
            return v, v.challenger, "canary"
        return v, v.champion, "champion"

    def record(self, target: Target, route: str, ids: Sequence[str], rows: Rows, outputs: list[dict[str, Any]] | None,
               seconds: float, error: str | None = None, body: bytes | None = None,
               outputs_json: bytes | None = None) -> None:
        """Count and log one answered (or failed) request; never blocks, never raises."""
        try:
            self.metrics.answered(target.tag, route, seconds, outputs)
            if self.log is not None:
                self.log.record(self.name, target.tag, route, ids, rows, outputs, seconds * 1000.0, error, body,
                                outputs_json)
        except Exception:  # metrics or the log must never fail a request
            log.exception("recording a prediction failed")

    def shadow(self, view: View, rows: Rows, ids: Sequence[str], champion_outputs: list[dict[str, Any]],
               body: bytes | None = None) -> None:
        """After the champion answered: score the same rows with the shadow challenger in the background."""
        challenger = view.challenger
        if view.mode != "shadow" or challenger is None:
            return
        tag = challenger.tag

        def done(outputs: list[dict[str, Any]], seconds: float) -> None:
            self.record(challenger, "shadow", ids, rows, outputs, seconds, None, body)
            self.metrics.compare(tag, len(outputs), _disagreements(champion_outputs, outputs))

        def failed(why: str, seconds: float) -> None:
            self.record(challenger, "shadow", ids, rows, None, seconds, why, body)

        self.shadow_runner.submit(lambda: challenger.model.predict_rows(rows), done, failed)

    def _shadow_outcome(self, outcome: str) -> None:
        challenger = self.view.challenger
        self.metrics.shadow_outcome(challenger.tag if challenger is not None else "none", outcome)

    # -- the release state ---------------------------------------------------------------------
    def desired(self, state: Release) -> tuple[str, str | None, str | None, float]:
        """Champion, challenger, mode and share this worker should serve for ``state`` and the environment."""
        s = self.settings
        champion = self.view.champion.tag if self.pinned else (state.champion or self.view.champion.tag)
        if s.challenger is not None:
            if s.challenger in state.retired:  # rolled back: stays off until promoted again
                return champion, None, None, 0.0
            return champion, s.challenger, "shadow" if s.shadow else "canary", s.canary_percent or 0.0
        if state.challenger is None or state.challenger == champion:
            return champion, None, None, 0.0
        return champion, state.challenger, state.mode, state.percent

    def refresh(self) -> View:
        """Read the release state and serve it (loading versions as needed); returns the view now served."""
        try:
            state = read(self.name, self.settings.store)
        except Exception as exc:  # the store is down: keep serving what we serve
            self._warn(f"cannot read the release state of {self.name!r}: {exc}")
            return self.view
        champion, challenger, mode, percent = self.desired(state)
        v = self.view
        current = (v.champion.tag, v.challenger.tag if v.challenger else None, v.mode, v.percent)
        if current == (champion, challenger, mode, percent) and v.revision == state.revision:
            return v
        champ = self._load(champion, "champion")
        chall = self._load(challenger, "challenger") if challenger else None
        if champ is None or (challenger is not None and chall is None):
            return v  # a version failed to load: keep the current view, try again at the next poll
        self.view = View(state.revision, champ, chall, mode if chall else None, percent if chall else 0.0)
        self._loaded = {(champ.tag, "champion"): champ, **({(chall.tag, "challenger"): chall} if chall else {})}
        self.metrics.served(state.revision, self.view.percent if self.view.mode == "canary" else 0.0)
        if self.on_view is not None and champ is not v.champion:
            self.on_view(self.view)
        if current != (champion, challenger, mode, percent):
            log.info("release %s: now serving %s", self.name, self.view.describe())
        return self.view

    def _load(self, tag: str, role: str) -> Target | None:
        if (tag, role) in self._loaded:
            return self._loaded[(tag, role)]
        try:
            target = self.loader(tag, role)
        except Exception as exc:
            message = f"cannot load {tag}: {exc}"
            if self._failed.get(tag) != message:
                log.error("release %s: %s", self.name, message)
            self._failed[tag] = self.last_error = message
            return None
        self._failed.pop(tag, None)
        self.metrics.test_metrics(tag, _test_metrics(target))
        return target

    def _poll(self) -> None:
        while True:
            time.sleep(self.settings.poll_s)
            try:
                self.refresh()
            except Exception:  # the poller must survive anything
                log.exception("release poll failed")

    def _monitor(self) -> None:
        """One worker per server computes the live metrics (and rolls back): the one holding the lock file.

        It computes them in a child process (:mod:`kit.release._monitor`: a report in a thread held
        this worker's GIL long enough to stall its event loop), at once when it starts (the gauges
        are there from the start), then every ``KIT_AUTO_ROLLBACK_S``; a child that dies is started
        again after that interval.
        """
        from kit.release._monitor import Monitor

        lock = None
        while True:
            lock = lock or _leader_lock(self.name)
            if lock is not None:
                s = self.settings
                self.monitor = Monitor(self.name, s.store, check_s=s.check_s, window_s=s.window_s,
                                       thresholds=s.thresholds, auto_rollback=s.auto_rollback,
                                       by=f"kit auto-rollback ({self.ids.prefix})", on_result=self.apply)
                try:
                    code = self.monitor.run()
                    self._warn(f"the live-metrics process of {self.name!r} exited with code {code}; "
                               f"starting it again in {s.check_s:g}s")
                except Exception as exc:  # cannot start it: try again later
                    self._warn(f"cannot run the live-metrics process of {self.name!r}: {exc}")
            time.sleep(self.settings.check_s)

    def apply(self, result: dict[str, Any]) -> None:
        """Take one check's outcome (:func:`kit.release._monitor.compute`): log a rollback, publish the report."""
        entry = result.get("rollback")
        if entry is not None:
            log.warning("release %s: %s rolled back automatically: %s", self.name, entry["from"], entry["reason"])
            self.refresh()
        if result.get("error"):
            self._warn(result["error"])
            self.metrics.report_outcome("error")
        report = result.get("report")
        if report is not None:
            self.last_report = report
            self.metrics.performance(report)
            self.metrics.report_outcome("ok")

    def check(self) -> dict[str, Any] | None:
        """Refresh the live metrics (and roll back automatically when enabled) in this process; returns the report.

        What the monitor's child process does every ``KIT_AUTO_ROLLBACK_S``, run here (tests, tools).
        """
        from kit.release._monitor import compute

        s = self.settings
        self.apply(compute(self.name, s.store, window_s=s.window_s, thresholds=s.thresholds,
                           auto_rollback=s.auto_rollback and self.view.challenger is not None,
                           by=f"kit auto-rollback ({self.ids.prefix})"))
        return self.last_report

    def describe(self) -> dict[str, Any]:
        """What ``GET /release`` answers: the view served, the settings, the log and shadow counters."""
        return {"name": self.name, "worker": os.getpid(), "serving": self.view.describe(),
                "pinned_champion": self.pinned,
                "poll_s": self.settings.poll_s, "env_challenger": self.settings.challenger,
                "log": self.log.stats() if self.log is not None else None,
                "shadow": {**self.shadow_runner.counts, "hung": self.shadow_runner.hung(),
                           "timeout_s": self.shadow_runner.timeout_s},
                "auto_rollback": self.settings.auto_rollback, "last_error": self.last_error}

    def _warn(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message


def _leader_lock(name: str) -> Any:
    """An exclusive lock on a file named after the server (the workers' parent process), or ``None`` if taken.

    Held for the life of the worker; if that worker dies, the kernel releases it and another takes over.
    """
    import fcntl
    import hashlib
    import tempfile

    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"kit-release-{uid}-{os.getppid()}-{digest}.lock")
    handle = open(path, "a")  # noqa: SIM115 - kept open: the lock lives as long as the file handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


async def _run(target: Target, rows: Rows) -> list[dict[str, Any]]:
    if target.submit is not None:
        return await target.submit(rows)
    records: list[dict[str, Any]] = await asyncio.to_thread(target.model.predict_rows, rows)
    return records


def _test_metrics(target: Target) -> dict[str, float]:
    bundle = getattr(target.model, "bundle", None)
    test = (getattr(bundle, "metrics", None) or {}).get("test", {})
    return {k: float(v) for k, v in test.items() if isinstance(v, int | float)}


def _disagreements(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> int:
    """Predictions that differ: another class, or values more than 1 % (of the larger magnitude) apart."""
    out = 0
    for x, y in zip(a, b, strict=False):
        p, q = x.get("prediction"), y.get("prediction")
        if isinstance(p, float) and isinstance(q, float):
            out += abs(p - q) > 0.01 * max(abs(p), abs(q), 1e-12)
        else:
            out += p != q
    return out
