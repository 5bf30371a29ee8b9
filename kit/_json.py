"""One conversion of numpy and path values to JSON types, shared by every step that writes JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` hook: numpy scalars and arrays, paths, sets and tuples; else ``str``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | tuple):
        return list(value)
    return str(value)


def strict_json_default(value: Any) -> Any:
    """Like :func:`json_default` but refuses values with no JSON meaning (bundle manifests)."""
    if isinstance(value, np.generic | np.ndarray | Path | set | tuple):
        return json_default(value)
    raise TypeError(f"cannot store {type(value).__name__} in a bundle manifest")


def to_json(data: Any) -> Any:
    """``data`` converted to plain JSON types (a deep copy)."""
    return json.loads(json.dumps(data, default=json_default))
