"""ASGI pieces shared by the admission middleware and the /predict fast path: types, auth, body reading, answers."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from kit.errors import KitError
from kit.serving import _codec
from kit.serving._errors import BadRequestError, PayloadTooLargeError, UnauthorizedError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = (b"content-type", b"application/json")


async def send_json(send: Send, status: int, data: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer with an encoded JSON body."""
    await send({"type": "http.response.start", "status": status,
                "headers": [JSON, (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


def error_body(exc: KitError) -> tuple[int, dict[str, Any]]:
    """Status code and JSON body for a kit error."""
    return exc.status_code, exc.to_dict()


async def send_error(send: Send, exc: KitError) -> int:
    """Answer a kit error as ``{"error", "message", "field", "row"}``; returns the status."""
    status, payload = error_body(exc)
    extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
    if status == 405:
        extra.append((b"allow", b"POST"))
    await send_json(send, status, _codec.dumps(payload), extra)
    return status


def authorize(scope: Scope, key: str | None) -> None:
    """Refuse a request without ``Authorization: Bearer <key>`` (constant-time comparison); no key: allow.

    Raises:
        UnauthorizedError: Naming the ``authorization`` header.
    """
    if not key:
        return
    given = b""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            given = value
            break
    if not hmac.compare_digest(given, b"Bearer " + key.encode()):
        raise UnauthorizedError("missing or wrong API key; send 'Authorization: Bearer <key>'", field="authorization")


def too_large(path: str, size: int | None, limit: int) -> PayloadTooLargeError:
    """The 413 for a body over ``limit``, saying what to do instead."""
    what = f"request body of {size} bytes" if size is not None else "request body"
    if path == "/predict_file":
        hint = "raise KIT_MAX_FILE_BYTES, or score the file offline with `kit predict`"
    else:
        hint = ("send fewer rows per request, upload large batches as a CSV to POST /predict_file, "
                "or raise KIT_MAX_BODY_BYTES")
    return PayloadTooLargeError(f"{what} is over the limit of {limit} bytes; {hint}", field="body")


async def read_body(scope: Scope, receive: Receive, limit: int, path: str) -> bytes:
    """The whole request body, refused (413) as soon as it is known to be over ``limit``.

    Raises:
        PayloadTooLargeError: Over the limit (by Content-Length, or while reading).
        BadRequestError: On an invalid Content-Length or a client that left mid-body.
    """
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadRequestError("invalid Content-Length header", field="content-length") from None
            if declared > limit:
                raise too_large(path, declared, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequestError("client disconnected before the body was complete", field="body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(path, None, limit)
        if not message.get("more_body", False):
            return b"".join(chunks) + chunk if chunks else chunk
        chunks.append(chunk)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields ``body`` once, then waits on the real one (for disconnects)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
