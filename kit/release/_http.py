"""The release's HTTP endpoints, answered in front of BentoML's routes.

=======================  =====================================================================
``POST /feedback``       ``{"items": [{"prediction_id": "...", "label": ...}, ...]}`` -> counts
``POST /feedback_file``  a CSV (``prediction_id,label``), as a multipart ``file`` field or the raw body
``GET /performance``     live metrics per version over ``?window=`` (default ``KIT_ROLLBACK_WINDOW_S``),
                         agreement, and the recommendation (what ``kit release status`` prints)
``GET /release``         the view this worker serves, its log and shadow counters
=======================  =====================================================================

Bad input gets a kit 4xx naming the field and row; the database work runs in a thread, so the
event loop keeps answering predictions meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from kit._json import json_default
from kit.errors import KitError

if TYPE_CHECKING:
    from kit.release._runtime import ReleaseRuntime

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PATHS = {"/feedback": "POST", "/feedback_file": "POST", "/performance": "GET", "/release": "GET"}
"""The paths this module answers, with their method."""

MAX_FEEDBACK_ITEMS = 10_000


class MethodError(KitError):
    """The path takes another HTTP method."""

    status_code = 405


async def handle(runtime: ReleaseRuntime, scope: Scope, body: bytes, send: Send) -> None:
    """Answer one request to a path in :data:`PATHS` (``body`` already read and size-checked)."""
    path, method = scope["path"], scope.get("method", "GET")
    try:
        if method != PATHS[path]:
            raise MethodError(f"{path} takes {PATHS[path]} (got {method})", field="method")
        if path == "/release":
            out: Any = await asyncio.to_thread(_release, runtime)
        elif path == "/performance":
            out = await asyncio.to_thread(_performance, runtime, scope)
        else:
            out = await asyncio.to_thread(_feedback, runtime, path, scope, body)
    except KitError as exc:
        await _send(send, exc.status_code, {**exc.to_dict(), **({"path": path} if exc.status_code == 405 else {})})
        return
    await _send(send, 200, out)


def _release(runtime: ReleaseRuntime) -> dict[str, Any]:
    from kit.release._state import read

    return {**runtime.describe(), "state": read(runtime.name, runtime.settings.store).to_dict()}


def _performance(runtime: ReleaseRuntime, scope: Scope) -> dict[str, Any]:
    from kit.release._decision import status
    from kit.release._report import parse_window

    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    unknown = [k for k in query if k != "window"]
    if unknown:
        raise KitError(f"unknown query parameter {unknown[0]!r}; /performance takes window (e.g. 1h)",
                       field=unknown[0])
    window = parse_window(query["window"][-1]) if "window" in query else runtime.settings.window_s
    if runtime.log is not None:
        runtime.log.flush(2.0)  # this worker's latest predictions are in the window too
    return status(runtime.name, runtime.settings.store, window_s=window, thresholds=runtime.settings.thresholds)


def _classes(runtime: ReleaseRuntime) -> list[str] | None:
    bundle = runtime.view.champion.model.bundle
    return None if bundle.task == "regression" else [str(c) for c in bundle.label_names]


def _feedback(runtime: ReleaseRuntime, path: str, scope: Scope, body: bytes) -> dict[str, Any]:
    from kit.release._feedback import parse_csv, parse_items, record

    if path == "/feedback":
        try:
            payload = json.loads(body, parse_constant=float) if body.strip() else None
        except (ValueError, RecursionError) as exc:
            raise KitError(f"request body is not valid JSON: {exc}", field="body") from None
        labels = parse_items(payload, _classes(runtime), MAX_FEEDBACK_ITEMS)
    else:
        labels = parse_csv(_csv_bytes(scope, body), _classes(runtime))
    if runtime.log is not None:
        runtime.log.flush(2.0)  # this worker's latest predictions are matched too
    return record(labels, runtime.settings.store)


def _csv_bytes(scope: Scope, body: bytes) -> bytes:
    """The CSV of a ``/feedback_file`` request: the multipart ``file`` field, or the raw body."""
    ctype = next((v for k, v in scope.get("headers", []) if k == b"content-type"), b"").decode("latin-1")
    if not ctype.startswith("multipart/form-data"):
        return body
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode("latin-1") + body)
    for part in message.iter_parts() if message.is_multipart() else []:
        if part.get_param("name", header="content-disposition") == "file":
            data = part.get_payload(decode=True)
            return data if isinstance(data, bytes) else b""
    raise KitError("send the CSV as a multipart/form-data file field named 'file' (or as the raw body)",
                   field="file")


async def _send(send: Send, status: int, body: Any) -> None:
    data = json.dumps(_finite(body), default=json_default, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if status == 405:
        headers.append((b"allow", PATHS.get(str(body.get("path")), "GET").encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``null`` (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
