"""``results.json``: what a notebook (or a wizard run) leaves for CI and for the next notebook.

One builder for every notebook: metrics, the bundle path, artifact paths, store tags and each
step's summary, so ``kit run`` can print a headline, chain a notebook's bundle to the next one,
and tests can assert on the same keys whichever notebook wrote them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit._json import to_json

if TYPE_CHECKING:
    from kit.bundle import ModelBundle
    from kit.config import DataConfig


def notebook_results(notebook: str, *, bundle: ModelBundle | None = None, bundle_path: str | Path | None = None,
                     smoke: bool = False, data: DataConfig | None = None, artifacts: Mapping[str, Any] | None = None,
                     tags: Mapping[str, Any] | None = None, steps: Mapping[str, Any] | None = None,
                     **extra: Any) -> dict[str, Any]:
    """The ``results.json`` document of one notebook run.

    Args:
        notebook: The notebook's stem, e.g. ``01_data_train``.
        bundle: The bundle the notebook ends with (task, primary metric and metrics come from it).
        bundle_path: Where it was saved (``kit run`` passes it to the next notebook as ``bundle_path``).
        smoke: Whether it ran with the smoke profile.
        data: The data config (defaults to the bundle's own).
        artifacts: Other files written, by name (``Path`` values are made absolute).
        tags: Names registered elsewhere (model store tag, bento tag, data hash ...).
        steps: Each step's JSON-able summary, by step name.
        **extra: More top-level keys (a notebook's own figures).

    Returns:
        A JSON-able dict.
    """
    data_dict = data.to_dict() if data is not None else (bundle.configs.get("data") if bundle is not None else None)
    path = str(Path(bundle_path).resolve()) if bundle_path else None
    out: dict[str, Any] = {
        "notebook": notebook,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "smoke": smoke,
        "data": data_dict,
        "task": bundle.task if bundle is not None else None,
        "primary_metric": bundle.primary_metric if bundle is not None else None,
        "metrics": bundle.metrics if bundle is not None else {},
        "runtime": dict(bundle.runtime_info) if bundle is not None else None,
        "bundle_path": path,
        "artifacts": {**({"bundle": path} if path else {}),
                      **{k: str(Path(v).resolve()) if isinstance(v, os.PathLike) else v
                         for k, v in (artifacts or {}).items()}},
        "tags": dict(tags or {}),
        "steps": dict(steps or {}),
    }
    out.update(extra)
    return out


def write_results(output_dir: str | Path, results: dict[str, Any]) -> Path:
    """Write ``results`` as ``output_dir/results.json`` (numpy values and paths made JSON-able, NaN as null).

    Args:
        output_dir: Directory, created when missing.
        results: From :func:`notebook_results` (or any JSON-able dict).

    Returns:
        The path written.
    """
    path = Path(output_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(to_json(results)), indent=2, allow_nan=False)
    path.write_text(text + "\n")
    return path


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinite floats replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
