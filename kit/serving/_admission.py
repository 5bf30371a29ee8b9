"""The admission middleware in front of the BentoML app: auth, body limits, JSON and schema checks, GET aliases.

Requests are admitted (or answered with a kit 4xx naming the field) before they reach BentoML's
parsing and adaptive batching. Not to be confused with the release gate (:mod:`kit.gate`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from kit.errors import KitError
from kit.serving._drift import psi_gauge
from kit.serving._errors import BadRequestError, MethodNotAllowedError, PayloadTooLargeError, UnauthorizedError
from kit.serving._model import ServedModel
from kit.serving._rows import check_rows, parse_json
from kit.serving._settings import Settings

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
POST_ONLY = ("/predict", "/explain", "/predict_file")
GET_ALIASES = frozenset({"/metadata", "/drift"})


class AdmissionState:
    """What the middleware shares with the service instance (filled in by :meth:`attach`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: ServedModel | None = None

    def attach(self, bundle: ModelBundle, tag: str, metadata: dict[str, Any] | None = None) -> ServedModel:
        """Wrap ``bundle`` for serving and make it the one requests are checked against."""
        self.model = ServedModel(bundle, tag, self.settings, metadata)
        psi_gauge()
        return self.model


async def _send_json(send: Send, status: int, body: dict[str, Any],
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
        if path in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            self._authorize(scope)
            method = scope.get("method", "GET")
            model = self.state.model
            if method == "GET" and path in GET_ALIASES:
                scope = {**scope, "method": "POST"}
                await self.app(scope, _replay(b"{}", receive), send)
                return
            if method == "GET" and path == "/metrics" and model is not None:
                model.refresh_gauges()
            if method != "POST" and path in POST_ONLY:
                raise MethodNotAllowedError(f"{path} takes POST with a JSON body (got {method}); see GET /docs",
                                            field="method")
            if method != "POST" or path not in (*POST_ONLY, *GET_ALIASES):
                await self.app(scope, receive, send)
                return
            s = self.state.settings
            limit = s.max_file_bytes if path == "/predict_file" else s.max_body_bytes
            body = await _read_body(scope, receive, limit, _too_large_hint(path))
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
                check_rows(model.bundle, parse_json(body), max_rows)
                # checked as JSON, so read as JSON whatever Content-Type the client sent
                headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        except KitError as exc:
            status, payload = error_body(exc)
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            extra += [(b"allow", b"POST")] if status == 405 else []
            await _send_json(send, status, payload, extra)
            return
        await self.app(scope, _replay(body, receive), send)

    def _authorize(self, scope: Scope) -> None:
        key = self.state.settings.api_key
        if not key:
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        expected = b"Bearer " + key.encode()
        if not hmac.compare_digest(given, expected):
            raise UnauthorizedError("missing or wrong API key; send 'Authorization: Bearer <key>'",
                                    field="authorization")


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


def _too_large_hint(path: str) -> str:
    """What to do about a body over the limit, for ``path``."""
    if path == "/predict_file":
        return "split the file, or raise KIT_MAX_FILE_BYTES on the server"
    return ("send many rows as a CSV to POST /predict_file (multipart, up to KIT_MAX_FILE_BYTES), split the request, "
            "or raise KIT_MAX_BODY_BYTES on the server")


async def _read_body(scope: Scope, receive: Receive, limit: int, hint: str = "") -> bytes:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadRequestError("invalid Content-Length header", field="content-length") from None
            if declared > limit:
                raise PayloadTooLargeError(f"request body of {declared} bytes is over the limit of {limit} bytes; "
                                           f"{hint}", field="body")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequestError("client disconnected before the body was complete", field="body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes; {hint}", field="body")
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
