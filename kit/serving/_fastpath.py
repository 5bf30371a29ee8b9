"""kit's fast path for ``POST /predict``: the outermost ASGI layer of the service.

A small tabular model answers a batch in tens of microseconds, so what a request costs is the HTTP
stack around it. BentoML's per-request middleware (an OpenTelemetry span per request and per ASGI
message, recorded even at sample rate 0 for its request ids; Prometheus metrics; the access log; the
timeout), its pydantic parsing and its adaptive batcher cost many times the model and kit's whole
path (bench/serve_layers.py prices each layer). So ``POST /predict`` is answered here, in front of them:

    auth -> body limit -> parse once (orjson) -> check once (:class:`RowChecker`; images decoded in a
    thread pool) -> the release
    (:meth:`~kit.release._runtime.ReleaseRuntime.answer`: route, number, log) -> kit's batcher of the
    version that answers (:class:`Batcher`) -> ``bundle.infer`` (:meth:`ServedModel.predict_requests`)
    -> encode once

with the same answers, the same 4xx bodies naming field and row, and its own Prometheus metrics
(:class:`ServingMetrics`). Every other request, and ``/predict`` with ``KIT_FAST_PATH=0``, goes on to
BentoML through the admission middleware. :func:`install` puts the layer in front when the service
starts: BentoML builds its Starlette app itself, so the admission middleware, which BentoML places
inside its own, wraps the app's built middleware stack on the lifespan startup scope (Starlette puts
the app in every scope). Where that is not possible the admission middleware answers ``/predict``
with the same code, behind BentoML's middleware.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from kit.errors import KitError
from kit.serving import _codec
from kit.serving._asgi import ASGIApp, Receive, Scope, Send, authorize, read_body, send_error, send_json
from kit.serving._release import MODEL_HEADER, request_key, with_model_header

if TYPE_CHECKING:
    from kit.serving._admission import AdmissionState

log = logging.getLogger(__name__)

PATH = "/predict"
INTERNAL = _codec.dumps({"error": "InternalError", "message": "the model failed on this request; see the server log",
                         "field": "model"})


async def predict(state: AdmissionState, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``POST /predict``: the fast path itself (also called by the admission middleware)."""
    start = time.perf_counter()
    s = state.settings
    assert state.checker is not None and state.batcher is not None
    champion = [(MODEL_HEADER, state.model.tag.encode())] if state.model is not None else []
    try:
        authorize(scope, s.api_key)
        body = await read_body(scope, receive, s.max_body_bytes, PATH)
        payload = _codec.loads(body)
        rows = await state.checker.check(payload, s.max_rows)  # an image model decodes in a thread
        if state.release is not None:  # routed, numbered, counted and logged (kit.release)
            # the log takes a table's rows as the body has them; an image is logged as its fingerprint
            logged = None if state.model is not None and state.model.bundle.kind == "image" else body
            # encoded there: the log takes a one-row answer's output from its JSON
            data, target = await state.release.answer(rows, request_key(scope, payload), _codec.dumps, logged)
            headers = [target.header]  # X-Kit-Model: the version that answered
        else:
            data, headers = _codec.dumps(await state.batcher.submit(rows)), champion
    except KitError as exc:
        status = await send_error(with_model_header(send, state), exc)
    except Exception:  # the model failed on rows the checks accepted: a server error, logged with its cause
        log.exception("POST /predict failed")
        status = 500
        await send_json(send, status, INTERNAL, champion)
    else:
        status = 200
        await send_json(send, status, data, headers)
    state.metrics.request(status, time.perf_counter() - start)


class FastPath:
    """The outermost layer: ``POST /predict`` by :func:`predict`, everything else to ``app``.

    Args:
        app: The rest of the service (BentoML's middleware stack and routes).
        state: The admission state (settings, model, checker, batcher, metrics).
    """

    def __init__(self, app: ASGIApp, state: AdmissionState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI call."""
        if (scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST"
                and self.state.batcher is not None):
            await predict(self.state, scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install(scope: Scope, state: AdmissionState) -> bool:
    """Put :class:`FastPath` in front of the Starlette app that serves ``scope`` (once per app).

    Returns:
        Whether the fast path now runs in front (``False``: the app is not one this knows how to wrap).
    """
    app: Any = scope.get("app")
    stack = getattr(app, "middleware_stack", None)
    if isinstance(stack, FastPath):
        return True
    if stack is None or not callable(stack):
        log.warning("kit's /predict fast path runs behind BentoML's middleware: the app %r has no built "
                    "middleware stack to wrap", type(app).__name__)
        return False
    app.middleware_stack = FastPath(stack, state)
    return True
