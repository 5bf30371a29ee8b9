"""Feedback: labels that arrive after the prediction, by ``prediction_id``, checked and stored.

``POST /feedback`` takes ``{"items": [{"prediction_id": "...", "label": ...}, ...]}``;
``POST /feedback_file`` takes a CSV with the columns ``prediction_id`` and ``label``. A label
must be one of the model's classes (compared as text) or, for regression, a finite number; a
bad item is refused naming its row and field, and nothing of that request is stored. A later
label for the same id replaces the earlier one. Ids not (yet) in the prediction log are stored
too (the log is written in the background) and counted as ``unmatched``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from typing import Any

from kit.errors import DataError, KitError, SchemaError
from kit.release._blocks import locate
from kit.release._db import tables, upsert
from kit.release._state import _engine

MAX_ID = 40
"""Longest prediction id accepted."""


def _label(value: Any, classes: list[str] | None, row: int) -> str:
    """The label as stored (JSON text), or a SchemaError naming the row."""
    if classes is None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SchemaError(f"item {row}: label must be a finite number for this regression model, got "
                              f"{value!r:.40}", field="label", row=row)
        return json.dumps(float(value))
    if isinstance(value, str | int):  # bool is an int: "True" matches a class named True
        text = str(value)
    elif isinstance(value, float) and math.isfinite(value):
        text = str(int(value)) if value.is_integer() and str(int(value)) in classes else str(value)
    else:
        raise SchemaError(f"item {row}: label must be one of the classes {classes}, got {value!r:.40}",
                          field="label", row=row)
    if text not in classes:
        raise SchemaError(f"item {row}: label {text!r} is not one of the classes {classes}", field="label", row=row)
    return json.dumps(text)


def _id(value: Any, row: int) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise SchemaError(f"item {row}: prediction_id must be the id a prediction returned (a string of at most "
                          f"{MAX_ID} characters), got {value!r:.50}", field="prediction_id", row=row)
    return value


def parse_items(payload: Any, classes: list[str] | None, max_items: int = 10_000) -> dict[str, str]:
    """Check a ``{"items": [...]}`` body; returns ``{prediction_id: label as JSON}`` (the last label per id wins).

    Raises:
        KitError: If the body is not an object with an ``items`` list.
        SchemaError: Naming the row and field of the first bad item, or ``items`` if there are too many.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
        raise KitError('expected a JSON object {"items": [{"prediction_id": "...", "label": ...}, ...]}',
                       field="items")
    extra = [k for k in payload if k != "items"]
    if extra:
        raise KitError(f"unexpected key {extra[0]!r}; the body holds only 'items'", field=str(extra[0]))
    items = payload["items"]
    if len(items) > max_items:
        raise SchemaError(f"too many items: {len(items)} > the limit of {max_items} per request", field="items")
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise SchemaError(f"item {i} is a {type(item).__name__}, expected an object with prediction_id and "
                              "label", row=i)
        for key in ("prediction_id", "label"):
            if key not in item:
                raise SchemaError(f"item {i}: missing field {key!r}", field=key, row=i)
        unknown = [k for k in item if k not in ("prediction_id", "label")]
        if unknown:
            raise SchemaError(f"item {i}: unknown field {unknown[0]!r}", field=str(unknown[0]), row=i)
        out[_id(item["prediction_id"], i)] = _label(item["label"], classes, i)
    return out


def parse_csv(data: bytes, classes: list[str] | None, max_items: int = 1_000_000) -> dict[str, str]:
    """Check a CSV upload with ``prediction_id`` and ``label`` columns (rows numbered from 0, header excluded)."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(data), dtype={"prediction_id": str}, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"the upload is not a readable CSV file: {exc}", field="file") from None
    missing = [c for c in ("prediction_id", "label") if c not in frame.columns]
    if missing:
        raise SchemaError(f"the CSV needs the columns prediction_id and label; missing {missing[0]!r}",
                          field=missing[0])
    if len(frame) > max_items:
        raise SchemaError(f"too many rows: {len(frame)} > the limit of {max_items}", field="file")
    out: dict[str, str] = {}
    for i, (pid, label) in enumerate(zip(frame["prediction_id"].tolist(), frame["label"].tolist(), strict=True)):
        if classes is None and isinstance(label, str):
            with contextlib.suppress(ValueError):
                label = float(label)
        if isinstance(label, str) and label == "":
            raise SchemaError(f"item {i}: label is empty", field="label", row=i)
        out[_id(pid, i)] = _label(label.item() if hasattr(label, "item") else label, classes, i)
    return out


def record(labels: dict[str, str], url: str | None = None) -> dict[str, Any]:
    """Store labels (replacing earlier ones for the same ids); returns counts of accepted and matched ids."""
    t = tables()
    now = time.time()
    ids = list(labels)
    with _engine(url).begin() as conn:
        upsert(conn, t.feedback, [{"prediction_id": k, "label": v, "at": now} for k, v in labels.items()],
               ["prediction_id"], ["label", "at"])
        matched = len(locate(conn, ids))
    return {"accepted": len(ids), "matched": matched, "unmatched": len(ids) - matched}
