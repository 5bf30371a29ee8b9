"""Where the service meets the release (:mod:`kit.release`): one runtime per worker, one place per request.

:func:`start_release` creates the worker's :class:`~kit.release._runtime.ReleaseRuntime` around the
champion the service loaded (``KIT_RELEASE=0`` leaves it off: the service then answers as a plain
one-model service, without ids, logging or routing). The fast path calls
:meth:`~kit.release._runtime.ReleaseRuntime.answer` for each ``POST /predict`` with the request's key
(:func:`request_key`), which routes it to the batcher of the version that answers; the admission
middleware hands ``/feedback``, ``/feedback_file``, ``/performance`` and ``/release`` to
:func:`kit.release._http.handle` and lets the read-only ``KIT_METRICS_KEY`` open ``/metrics``
(:func:`admit`).
"""

from __future__ import annotations

import dataclasses
import gc
import hmac
import os
from typing import TYPE_CHECKING, Any

from kit.errors import ConfigError
from kit.serving._asgi import Message, Scope, Send, authorize
from kit.serving._errors import UnauthorizedError

if TYPE_CHECKING:
    from kit.package._resolve import ServedRef
    from kit.release._runtime import ReleaseRuntime, Target, View
    from kit.serving._admission import AdmissionState
    from kit.serving._settings import Settings

KEY_HEADER = b"x-request-key"
MODEL_HEADER = b"x-kit-model"


def enabled() -> bool:
    """``KIT_RELEASE`` (default on)."""
    raw = os.environ.get("KIT_RELEASE", "1").strip().lower()
    if raw not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ConfigError(f"KIT_RELEASE must be 0 or 1, but got {raw!r}", field="KIT_RELEASE")
    return raw in ("1", "true", "yes", "on")


def start_release(state: AdmissionState, served: ServedRef) -> ReleaseRuntime | None:
    """The worker's release runtime around the attached champion, or ``None`` when ``KIT_RELEASE=0``."""
    from kit.release._runtime import ReleaseRuntime, Target
    from kit.release._settings import ReleaseSettings

    if not enabled() or state.model is None or state.batcher is None:
        return None
    settings = ReleaseSettings.from_env()

    def loader(tag: str, role: str) -> Target:
        from kit.bundle import ModelBundle
        from kit.package import served as resolve

        ref = resolve(tag)
        # only the champion keeps a drift window (/drift reports it), shared with the other workers
        s = state.settings if role == "champion" else dataclasses.replace(state.settings, drift_window=0,
                                                                          drift_dir=None, workers=1)
        model, batcher = state.prepare(ModelBundle.load(ref.path), ref.tag, ref.store_info(), s)
        return Target(ref.tag, model, batcher.submit, batcher)

    def on_view(view: View) -> None:
        from kit.serving._images import row_checker

        champion = view.champion
        state.model, state.batcher = champion.model, champion.batcher
        state.checker = row_checker(champion.model.bundle, state.settings.decode_threads)

    champion = Target(served.tag, state.model, state.batcher.submit, state.batcher)
    runtime = ReleaseRuntime(champion, settings, loader, pinned=not served.follows, on_view=on_view)
    state.release = runtime
    # With the release on, a worker keeps more objects alive between collections (queued log rows and counts
    # until their threads take them, the writer's batches, a second model), so the oldest generation fills
    # and full collections follow, each walking the whole heap the worker loaded (libraries, models: ~100 ms
    # on bench/release.py's servers). Frozen now, that heap is left out of every later collection.
    gc.freeze()
    return runtime


def request_key(scope: Scope, payload: Any) -> str | None:
    """The request's routing key: the ``X-Request-Key`` header, else the body's ``key`` field, else ``None``."""
    for name, value in scope.get("headers", []):
        if name == KEY_HEADER:
            return bytes(value).decode("latin-1")
    key = payload.get("key") if isinstance(payload, dict) else None
    return None if key is None else str(key)


def with_model_header(send: Send, state: AdmissionState) -> Send:
    """``send`` adding ``X-Kit-Model: name:version`` of the champion to a response that does not name one."""
    model = state.model
    if model is None:
        return send
    header = (MODEL_HEADER, model.tag.encode())

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if all(k.lower() != MODEL_HEADER for k, _ in headers):
                message = {**message, "headers": [*headers, header]}
        await send(message)

    return wrapped


def admit(scope: Scope, path: str, settings: Settings) -> None:
    """Authorize a request: ``KIT_API_KEY`` everywhere, and on ``/metrics`` also the read-only ``KIT_METRICS_KEY``.

    Raises:
        UnauthorizedError: Naming the ``authorization`` header.
    """
    metrics_key = settings.metrics_key
    if path == "/metrics" and metrics_key:
        given = next((bytes(v) for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        if hmac.compare_digest(given, b"Bearer " + metrics_key.encode()):
            return
        if not settings.api_key:  # the metrics key guards /metrics even without an API key
            raise UnauthorizedError("missing or wrong metrics key; send 'Authorization: Bearer <key>'",
                                    field="authorization")
    authorize(scope, settings.api_key)
