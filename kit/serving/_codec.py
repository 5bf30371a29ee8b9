"""The service's JSON codec: orjson when installed (the ``serve`` extra), else the standard library.

Requests are parsed once, here, and answers written once, here. orjson parses strict JSON only, so a
body it refuses is parsed again by the standard library, which reads the ``NaN`` and ``Infinity``
literals that Python's ``json.dumps`` writes; those values are then refused by field and row
(:func:`kit.serving.check_rows`) with a message that says what to send instead. Anything neither
parser reads is a 400 naming the body.
"""

from __future__ import annotations

import json
from typing import Any

from kit._json import json_default
from kit.serving._errors import BadRequestError

try:
    import orjson
except ImportError:  # pragma: no cover - the serve extra installs it
    orjson = None  # type: ignore[assignment]

ENGINE = "orjson" if orjson is not None else "json"
"""Which library encodes and decodes (reported by ``/metadata``)."""


def loads(body: bytes) -> Any:
    """Parse a request body.

    Raises:
        BadRequestError: If the body is not JSON (naming ``body``), including nesting too deep to parse.
    """
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # NaN / Infinity literals, numbers out of range, or not JSON: the standard library says which
    try:
        return json.loads(body, parse_constant=float)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}", field="body") from None


def dumps(data: Any) -> bytes:
    """Encode an answer; numpy values are converted (:func:`kit._json.json_default`), NaN becomes ``null``."""
    if orjson is not None:
        return orjson.dumps(data, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(_finite(data), default=json_default, allow_nan=False).encode()


def _finite(data: Any) -> Any:
    """``data`` with non-finite floats as ``None`` (what orjson writes), for the standard library."""
    if isinstance(data, float):
        return data if data == data and data not in (float("inf"), float("-inf")) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data
