"""Request checks: parse a JSON body and check ``{"rows": [...]}`` against the model's schema, naming field and row."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from kit.errors import SchemaError
from kit.serving._errors import BadRequestError

if TYPE_CHECKING:
    from kit.bundle import ModelBundle


def parse_json(body: bytes) -> Any:
    """Parse a request body; ``NaN``/``Infinity`` literals parse (and are refused later by field)."""
    try:
        return json.loads(body, parse_constant=float)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}", field="body") from None


def check_rows(bundle: ModelBundle, payload: Any, max_rows: int) -> list[dict[str, Any]]:
    """Check a ``{"rows": [{feature: value, ...}, ...]}`` body against the model's schema.

    The body may carry a ``key`` beside ``rows``: the sticky routing key of a canary release.

    Stricter than the preprocessor on types (JSON has real types, so a number given as text
    or a boolean in a numeric field is refused); the unseen-category rule follows the
    preprocessor's ``unknown_category`` policy. ``null`` means missing (imputed).

    Returns:
        The rows.

    Raises:
        BadRequestError: If the body is not an object with a ``rows`` list.
        SchemaError: Naming the field and row of the first bad value, or ``rows`` when there
            are more than ``max_rows``.
    """
    if not isinstance(payload, dict) or "rows" not in payload:
        raise BadRequestError('expected a JSON object {"rows": [{feature: value, ...}, ...]}', field="rows")
    extra = [k for k in payload if k not in ("rows", "key")]
    if extra:
        raise BadRequestError(f"unexpected key {extra[0]!r}; the body holds 'rows' and optionally 'key'",
                              field=str(extra[0]))
    key = payload.get("key")
    if key is not None and (isinstance(key, bool) or not isinstance(key, str | int)):
        raise BadRequestError("'key' (the sticky routing key) must be a string", field="key")
    rows = payload["rows"]
    if not isinstance(rows, list):
        raise SchemaError(f"'rows' must be a list of objects, got {type(rows).__name__}", field="rows")
    if len(rows) > max_rows:
        raise SchemaError(f"too many rows: {len(rows)} > the limit of {max_rows} per request; "
                          "split the request or use /predict_file", field="rows")
    pre = bundle.preprocessor
    names = pre.feature_names_in_
    known = set(names)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise SchemaError(f"row {i} is a {type(row).__name__}, expected an object of feature: value", row=i)
        for name in names:
            if name not in row:
                raise SchemaError(f"row {i}: missing field {name!r}", field=name, row=i)
        if len(row) != len(names):
            unknown = next(k for k in row if k not in known)
            raise SchemaError(f"row {i}: unknown field {unknown!r}; the model takes: {', '.join(names)}",
                              field=str(unknown), row=i)
        for name in names:
            _check_value(pre.kinds_[name], name, row[name], i, pre.categories_.get(name),
                         pre.unknown_category)
    return rows


def _check_value(kind: str, name: str, value: Any, row: int, categories: list[str] | None,
                 policy: str) -> None:
    if value is None:
        return
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SchemaError(f"row {row}: field {name!r} must be a number or null, got "
                              f"{type(value).__name__} {value!r:.40}", field=name, row=row)
        try:
            finite = math.isfinite(value)
        except OverflowError:
            finite = False
        if not finite:
            raise SchemaError(f"row {row}: field {name!r} must be finite, got {value!r:.40}", field=name, row=row)
        return
    if not isinstance(value, str | int | bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise SchemaError(f"row {row}: field {name!r} must be a category (string) or null, got "
                          f"{type(value).__name__}", field=name, row=row)
    text = str(value)
    if policy == "error" and categories is not None and text not in categories:
        shown = categories if len(categories) <= 20 else [*categories[:20], "..."]
        raise SchemaError(f"row {row}: field {name!r} has unseen category {text!r}; known: {', '.join(shown)}",
                          field=name, row=row)
