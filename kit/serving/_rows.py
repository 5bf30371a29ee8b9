"""Request checks: parse a JSON body and check ``{"rows": [...]}`` against the model's schema, naming field and row."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from kit.errors import SchemaError
from kit.serving import _codec
from kit.serving._errors import BadRequestError

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

_INF = float("inf")


def parse_json(body: bytes) -> Any:
    """Parse a request body; ``NaN``/``Infinity`` literals parse (and are refused later by field)."""
    return _codec.loads(body)


class RowChecker:
    """The schema checks of :func:`check_rows`, prepared once per model (the service builds one at start-up).

    Args:
        bundle: The served model; its preprocessor's names, kinds, categories and policy are read now.
    """

    def __init__(self, bundle: ModelBundle) -> None:
        pre = bundle.preprocessor
        self.names: list[str] = list(pre.feature_names_in_)
        self.known = frozenset(self.names)
        self.constant = frozenset(getattr(pre, "constant_", ()))  # constant training columns: accepted, ignored
        self.kinds: dict[str, str] = dict(pre.kinds_)
        self.numeric = frozenset(n for n in self.names if self.kinds[n] == "numeric")
        self.categories: dict[str, list[str]] = {n: list(c) for n, c in pre.categories_.items()}
        self.policy: str = pre.unknown_category
        # the category sets an unseen-category check needs (none under the "ignore" policy)
        self.allowed = {n: frozenset(c) for n, c in self.categories.items()} if self.policy == "error" else {}

    def __call__(self, payload: Any, max_rows: int) -> list[dict[str, Any]]:
        """Check a parsed body; see :func:`check_rows`."""
        rows = self.rows_of(payload, max_rows)
        names, numeric, allowed = self.names, self.numeric, self.allowed
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise SchemaError(f"row {i} is a {type(row).__name__}, expected an object of feature: value", row=i)
            if row.keys() != self.known:
                self._names(row, i)
            for name in names:
                value = row[name]
                kind = type(value)
                if kind is float and name in numeric and -_INF < value < _INF:
                    continue  # the common case, checked inline: a finite number (NaN fails the comparison)
                if kind is str and name not in numeric and (not allowed or value in allowed[name]):
                    continue  # a known category, or any text under the "ignore" policy
                _check_value(self.kinds[name], name, value, i, self.categories.get(name), self.policy)
        return rows

    async def check(self, payload: Any, max_rows: int) -> list[dict[str, Any]]:
        """:meth:`__call__` from the event loop (a table's checks take microseconds: run inline)."""
        return self(payload, max_rows)

    def rows_of(self, payload: Any, max_rows: int) -> list[Any]:
        """The ``rows`` list of a body, checking the envelope (``rows``, an optional ``key``) and the row limit."""
        if not isinstance(payload, dict) or "rows" not in payload:
            raise BadRequestError('expected a JSON object {"rows": [{feature: value, ...}, ...]}', field="rows")
        if len(payload) > 1:
            extra = next((k for k in payload if k not in ("rows", "key")), None)
            if extra is not None:
                raise BadRequestError(f"unexpected key {extra!r}; the body holds 'rows' and optionally 'key'",
                                      field=str(extra))
            key = payload["key"]
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise BadRequestError("'key' (the sticky routing key) must be a string", field="key")
        rows = payload["rows"]
        if not isinstance(rows, list):
            raise SchemaError(f"'rows' must be a list of objects, got {type(rows).__name__}", field="rows")
        if len(rows) > max_rows:
            raise SchemaError(f"too many rows: {len(rows)} > the limit of {max_rows} per request; "
                              "split the request or use /predict_file", field="rows")
        return rows

    def _names(self, row: dict[str, Any], i: int) -> None:
        for name in self.names:
            if name not in row:
                raise SchemaError(f"row {i}: missing field {name!r}", field=name, row=i)
        unknown = next((k for k in row if k not in self.known and k not in self.constant), None)
        if unknown is None:
            return  # only constant training columns besides the features: accepted and ignored
        raise SchemaError(f"row {i}: unknown field {unknown!r}; the model takes: {', '.join(self.names)}",
                          field=str(unknown), row=i)


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
    return RowChecker(bundle)(payload, max_rows)


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
            if value != value:  # NaN: what Python's json.dumps writes for a missing float
                raise SchemaError(f"row {row}: field {name!r} is NaN, which JSON does not have; send null for a "
                                  "missing value (it is imputed with the training median)", field=name, row=row)
            raise SchemaError(f"row {row}: field {name!r} must be a finite number or null (missing), got "
                              f"{value!r:.40}", field=name, row=row)
        return
    if not isinstance(value, str | int | bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise SchemaError(f"row {row}: field {name!r} must be a category (string) or null, got "
                          f"{type(value).__name__}", field=name, row=row)
    text = str(value)
    if policy == "error" and categories is not None and text not in categories:
        shown = categories if len(categories) <= 20 else [*categories[:20], "..."]
        raise SchemaError(f"row {row}: field {name!r} has unseen category {text!r}; known: {', '.join(shown)}",
                          field=name, row=row)
