"""The admission middleware in front of BentoML's routes: auth, body limits, JSON and schema checks, GET aliases.

Requests are admitted (or answered with a kit 4xx naming the field) before they reach BentoML's
parsing. ``POST /predict`` is answered by kit's fast path (:mod:`kit.serving._fastpath`), which this
middleware installs in front of BentoML's middleware when the service starts; ``KIT_FAST_PATH=0``
sends it through BentoML's own handler and batcher instead. ``/feedback``, ``/feedback_file``,
``/performance`` and ``/release`` go to the release (:mod:`kit.release._http`). Not to be confused with
the release gate (:mod:`kit.gate`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kit.errors import KitError
from kit.serving import _codec, _fastpath
from kit.serving._asgi import JSON, ASGIApp, Message, Receive, Scope, Send, read_body, replay, send_error
from kit.serving._batcher import Batcher
from kit.serving._drift import psi_gauge
from kit.serving._errors import BadRequestError, MethodNotAllowedError
from kit.serving._images import row_checker
from kit.serving._metrics import ServingMetrics
from kit.serving._model import ServedModel
from kit.serving._release import admit, with_model_header
from kit.serving._rows import RowChecker
from kit.serving._settings import Settings

if TYPE_CHECKING:
    from kit.bundle import ModelBundle
    from kit.release._runtime import ReleaseRuntime

HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
GET_ALIASES = frozenset({"/metadata", "/drift"})
RELEASE_PATHS = frozenset({"/feedback", "/feedback_file", "/performance", "/release"})
POST_ONLY = {"/predict": 'with a JSON body {"rows": [{feature: value, ...}, ...]}',
             "/explain": 'with a JSON body {"rows": [{feature: value, ...}, ...]}',
             "/predict_file": "with the CSV as a multipart/form-data file field named 'file'"}


class AdmissionState:
    """What the middleware and the fast path share with the service instance (filled in by :meth:`attach`).

    Attributes:
        settings: The service settings.
        model: The served model, once attached.
        checker: The schema checks, prepared for the model.
        batcher: kit's batcher over :meth:`ServedModel.predict_requests`.
        metrics: The fast path's Prometheus metrics.
        front: Whether the fast path runs in front of BentoML's middleware (set when the service starts).
        release: The worker's release runtime (:func:`~kit.serving.start_release`), or ``None``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: ServedModel | None = None
        self.checker: RowChecker | None = None
        self.batcher: Batcher | None = None
        self.metrics = ServingMetrics(register=False)  # registered by attach(), in the worker process
        self.front = False
        self.release: ReleaseRuntime | None = None

    def attach(self, bundle: ModelBundle, tag: str, metadata: dict[str, Any] | None = None) -> ServedModel:
        """Wrap ``bundle`` for serving and make it the one requests are checked against and answered by."""
        self.metrics = ServingMetrics()
        model, self.batcher = self.prepare(bundle, tag, metadata)
        self.checker = row_checker(bundle, self.settings.decode_threads)
        psi_gauge()
        self.model = model
        return model

    def prepare(self, bundle: ModelBundle, tag: str, metadata: dict[str, Any] | None = None,
                settings: Settings | None = None) -> tuple[ServedModel, Batcher]:
        """A served model and kit's batcher over it (the champion at start-up; any version a release loads)."""
        s = settings or self.settings
        model = ServedModel(bundle, tag, s, metadata)
        batcher = Batcher(model.predict_requests, model.lock, max_batch_size=s.max_batch_size,
                          wait_ms=s.batch_wait_ms, enabled=s.batching, on_call=self.metrics.batch,
                          offload=bundle.kind == "image")
        if not s.fast_path:
            model.predict_path = "BentoML's handler and adaptive batcher (KIT_FAST_PATH=0)"
        else:
            model.predict_path = f"kit's fast path, {'in front of' if self.front else 'behind'} BentoML's middleware"
        return model, batcher


class AdmissionMiddleware:
    """ASGI middleware in front of BentoML's routes (see the module docstring).

    Args:
        app: The wrapped ASGI app.
        state: Shared settings, served model, row checker, batcher and metrics.
    """

    def __init__(self, app: ASGIApp, state: AdmissionState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check auth, size and schema, then pass the request on (or answer a kit 4xx)."""
        state, s = self.state, self.state.settings
        if scope["type"] == "lifespan" and s.fast_path:
            state.front = _fastpath.install(scope, state)
        path: str = scope.get("path", "")
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = with_model_header(send, state)  # X-Kit-Model on every response
        if path in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if path == "/predict" and method == "POST" and s.fast_path and state.batcher is not None:
            await _fastpath.predict(state, scope, receive, send)  # the fast path could not be put in front
            return
        try:
            admit(scope, path, s)
            if state.release is not None and path in RELEASE_PATHS:
                from kit.release._http import handle

                limit = s.max_file_bytes if path == "/feedback_file" else s.max_body_bytes
                await handle(state.release, scope, await read_body(scope, receive, limit, path), send)
                return
            if path in POST_ONLY and method not in ("POST", "OPTIONS"):
                raise MethodNotAllowedError(f"{method} {path} is not served; use POST {path} {POST_ONLY[path]}",
                                            field="method")
            if method == "GET" and path in GET_ALIASES:
                scope = {**scope, "method": "POST"}
                await self.app(scope, replay(b"{}", receive), send)
                return
            if method == "GET" and path == "/metrics" and state.model is not None:
                state.model.refresh_gauges()
            if method != "POST" or path not in ("/predict", "/explain", "/predict_file", *GET_ALIASES):
                await self.app(scope, receive, send)
                return
            limit = s.max_file_bytes if path == "/predict_file" else s.max_body_bytes
            body = await read_body(scope, receive, limit, path)
            if path in GET_ALIASES:  # no input; a non-object body gets a kit 400, not BentoML's off-schema one
                if body.strip() and not isinstance(_codec.loads(body), dict):
                    raise BadRequestError("request body must be a JSON object or empty", field="body")
                body = b"{}"
                headers = [(k, v) for k, v in scope.get("headers", []) if k not in (b"content-type", b"content-length")]
                scope = {**scope, "headers": [*headers, JSON]}
            elif path == "/predict_file":
                await _check_form(scope, body)
            elif state.checker is not None:
                limit = s.max_rows if path == "/predict" else s.max_explain_rows
                await state.checker.check(_codec.loads(body), limit)  # an image model decodes in a thread
                # checked as JSON, so read as JSON whatever Content-Type the client sent
                headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
                scope = {**scope, "headers": [*headers, JSON]}
        except KitError as exc:
            await send_error(send, exc)
            return
        await self.app(scope, replay(body, receive), send)


async def _check_form(scope: Scope, body: bytes) -> None:
    """Refuse a malformed multipart upload with a 400 (BentoML would answer 500)."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    async def once() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
        await form.close()
    except Exception as exc:  # starlette raises HTTPException / MultiPartException
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
        raise BadRequestError(f"the upload is not valid multipart/form-data: {detail}", field="file") from None
    if not isinstance(form.get("file"), UploadFile):
        raise BadRequestError("send the CSV as a multipart/form-data file field named 'file'", field="file")
