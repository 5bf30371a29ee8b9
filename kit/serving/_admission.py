"""The admission middleware in front of the BentoML app: auth, body limits, JSON and schema checks, GET aliases.

Requests are admitted (or answered with a kit 4xx naming the field) before they reach BentoML's
parsing and adaptive batching. Not to be confused with the release gate (:mod:`kit.gate`).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from kit.errors import KitError
from kit.serving._drift import psi_gauge
from kit.serving._errors import BadRequestError, PayloadTooLargeError, UnauthorizedError
from kit.serving._model import ServedModel
from kit.serving._release import MODEL_HEADER, model_header, request_key
from kit.serving._rows import check_rows, parse_json
from kit.serving._settings import Settings

if TYPE_CHECKING:
    from kit.bundle import ModelBundle
    from kit.release._runtime import ReleaseRuntime

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
GET_ALIASES = frozenset({"/metadata", "/drift"})
RELEASE_PATHS = frozenset({"/feedback", "/feedback_file", "/performance", "/release"})
INTERNAL = {"error": "InternalError", "message": "the model failed on this request; see the server log",
            "field": "model"}


class AdmissionState:
    """What the middleware shares with the service instance (filled in by :meth:`attach`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: ServedModel | None = None
        self.release: ReleaseRuntime | None = None

    def attach(self, bundle: ModelBundle, tag: str, metadata: dict[str, Any] | None = None) -> ServedModel:
        """Wrap ``bundle`` for serving and make it the one requests are checked against."""
        self.model = ServedModel(bundle, tag, self.settings, metadata)
        psi_gauge()
        return self.model


async def _send_json(send: Send, status: int, body: Any,
                     headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


def error_body(exc: KitError) -> tuple[int, dict[str, Any]]:
    """Status code and JSON body for a kit error."""
    return exc.status_code, exc.to_dict()


class AdmissionMiddleware:
    """ASGI middleware in front of the BentoML app (see the module docstring).

    Args:
        app: The wrapped ASGI app.
        state: Shared settings and served model.
    """

    def __init__(self, app: ASGIApp, state: AdmissionState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check auth, size and schema, then pass the request on (or answer a kit 4xx)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        plain_send, send = send, _with_headers(send, model_header(self.state))  # X-Kit-Model on every response
        if path in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            self._authorize(scope, path)
            release = self.state.release
            if release is not None and path in RELEASE_PATHS:
                from kit.release._http import handle

                limit = self.state.settings.max_file_bytes if path == "/feedback_file" else \
                    self.state.settings.max_body_bytes
                await handle(release, scope, await _read_body(scope, receive, limit), send)
                return
            method = scope.get("method", "GET")
            model = self.state.model
            if method == "GET" and path in GET_ALIASES:
                scope = {**scope, "method": "POST"}
                await self.app(scope, _replay(b"{}", receive), send)
                return
            if method == "GET" and path == "/metrics" and model is not None:
                model.refresh_gauges()
            if method != "POST" or path not in ("/predict", "/explain", "/predict_file", *GET_ALIASES):
                await self.app(scope, receive, send)
                return
            s = self.state.settings
            limit = s.max_file_bytes if path == "/predict_file" else s.max_body_bytes
            body = await _read_body(scope, receive, limit)
            if path in GET_ALIASES:  # no input; a non-object body gets a kit 400, not BentoML's off-schema one
                if body.strip() and not isinstance(parse_json(body), dict):
                    raise BadRequestError("request body must be a JSON object or empty", field="body")
                body = b"{}"
                headers = [(k, v) for k, v in scope.get("headers", []) if k not in (b"content-type", b"content-length")]
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
            elif path == "/predict_file":
                await _check_form(scope, body)
            elif model is not None:
                max_rows = s.max_rows if path == "/predict" else s.max_explain_rows
                payload = parse_json(body)
                rows = check_rows(model.bundle, payload, max_rows)
                if path == "/predict" and release is not None:  # routed, numbered and logged by the release
                    await _release_predict(release, rows, request_key(scope, payload), plain_send)
                    return
                # checked as JSON, so read as JSON whatever Content-Type the client sent
                headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        except KitError as exc:
            status, payload = error_body(exc)
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            await _send_json(send, status, payload, extra)
            return
        await self.app(scope, _replay(body, receive), send)

    def _authorize(self, scope: Scope, path: str) -> None:
        key = self.state.settings.api_key
        metrics_key = self.state.settings.metrics_key
        if not key and not (metrics_key and path == "/metrics"):
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        ok = bool(key) and hmac.compare_digest(given, b"Bearer " + key.encode())  # type: ignore[union-attr]
        if path == "/metrics" and metrics_key:  # the read-only key opens /metrics and nothing else
            ok = hmac.compare_digest(given, b"Bearer " + metrics_key.encode()) or ok
        if not ok:
            raise UnauthorizedError("missing or wrong API key; send 'Authorization: Bearer <key>'",
                                    field="authorization")


async def _release_predict(release: ReleaseRuntime, rows: list[dict[str, Any]], key: str | None, send: Send) -> None:
    """Answer ``POST /predict`` through the release: ``X-Kit-Model`` names the version that answered."""
    try:
        records, tag = await release.answer(rows, key)
    except Exception:  # the champion failed on rows the checks accepted: a logged server error
        log.exception("POST /predict failed")
        await _send_json(send, 500, INTERNAL, [(MODEL_HEADER, release.view.champion.tag.encode())])
        return
    await _send_json(send, 200, records, [(MODEL_HEADER, tag.encode())])


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    """``send`` adding ``headers`` to the response start (unless the app set them)."""
    if not headers:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in headers if k not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


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


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadRequestError("invalid Content-Length header", field="content-length") from None
            if declared > limit:
                raise PayloadTooLargeError(f"request body of {declared} bytes is over the limit of {limit} bytes",
                                           field="body")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequestError("client disconnected before the body was complete", field="body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes", field="body")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields ``body`` once, then waits on the real one (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
