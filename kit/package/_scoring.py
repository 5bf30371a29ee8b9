"""One batch of rows through ``bundle.infer`` for the batch scorers (in-process and Spark alike).

What both engines share: which model (a store tag, a bundle directory or a bundle), which columns
go in (the bundle's features, picked out by name) and come out (kept key columns, ``prediction``,
``proba_<label>`` per class or the value, ``model_tag``), and what happens to a row the schema
refuses: with ``on_error="fail"`` the error names the row and stops the run; with ``"skip"`` the
row is set aside with its reason and the others are scored.

A batch is scored in one ``infer`` call. Only a batch holding a bad row is split: the error names
the first bad row, which is set aside (the checks are per value, so that row fails on its own),
the rows before it are scored again as one batch and the rows after it in two halves, so a batch
of ``n`` rows costs ``O(n log n)`` rows of work at worst and one ``infer`` call when it is clean.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.errors import ConfigError, DataError, KitError, SchemaError

if TYPE_CHECKING:
    from kit.bundle import ModelBundle
    from kit.prediction import Prediction

ON_ERROR = ("fail", "skip")
TAG_COLUMN = "model_tag"
ERROR_COLUMNS = ("error_field", "error")
"""Columns an error row carries besides its kept columns and where it came from."""
ORIGIN_COLUMNS = ("input_file", "input_row")
"""Where a Spark error row came from (in-process: ``row``, the file row)."""

@dataclass(frozen=True)
class BatchSummary:
    """What a batch scoring run did.

    Attributes:
        rows: Rows read (scored + failed) in this run.
        scored: Rows written to the output.
        failed: Rows written to the errors output (``on_error="skip"``).
        output: The output path.
        errors: The errors output, or ``None`` when no row failed.
        tag: The model tag written in ``model_tag``.
        engine: ``local`` or ``spark``.
        parts: Parts of the output (Spark); 1 in-process.
        skipped_parts: Parts a previous run had finished, not scored again (Spark).
        seconds: Wall time of the run.
    """

    rows: int
    scored: int
    failed: int
    output: str
    errors: str | None
    tag: str
    engine: str = "local"
    parts: int = 1
    skipped_parts: int = 0
    seconds: float = 0.0


def check_on_error(on_error: str) -> str:
    """``on_error`` if it is ``fail`` or ``skip``, else a ConfigError naming it."""
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be 'fail' or 'skip', but got {on_error=}", field="on_error")
    return on_error


def resolve_model(model: str | os.PathLike[str] | ModelBundle | None) -> tuple[ModelBundle, str]:
    """The bundle to score with and the tag written beside each prediction.

    Args:
        model: A store tag (``name:version`` or ``name``; ``None``: the latest promoted model), a
            bundle directory, or a loaded :class:`~kit.bundle.ModelBundle`.

    Returns:
        The bundle and its tag: the store tag, else ``bundle:<first 12 hex of the manifest sha256>``.
    """
    from kit.bundle import ModelBundle

    if isinstance(model, ModelBundle):
        return model, f"bundle:{bundle_digest(model)[:12]}"
    if model is not None and Path(model).is_dir():
        path = Path(model)
        return ModelBundle.load(path), f"bundle:{_file_digest(path / 'bundle.json')[:12]}"
    from kit.package._resolve import served

    ref = served(None if model is None else str(model))
    return ModelBundle.load(ref.path), ref.tag


def bundle_digest(bundle: ModelBundle) -> str:
    """sha256 of a bundle's manifest and files (what identifies it in a resumable run)."""
    import json

    from kit._json import strict_json_default

    h = hashlib.sha256(json.dumps(bundle.manifest(), sort_keys=True, default=strict_json_default).encode())
    h.update(bundle.preprocessor.to_json().encode())
    for name in sorted(bundle.weights):
        h.update(name.encode() + np.ascontiguousarray(bundle.weights[name]).tobytes())
    for name in sorted(bundle.artifacts):
        h.update(name.encode() + bundle.artifacts[name])
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_keep(keep: str | Sequence[str] | None) -> tuple[str, ...]:
    """Key columns to pass through, from ``"id,region"`` or a sequence (duplicates refused)."""
    if keep is None:
        return ()
    names = [k.strip() for k in keep.split(",")] if isinstance(keep, str) else [str(k) for k in keep]
    names = [n for n in names if n]
    if len(set(names)) != len(names):
        raise ConfigError(f"keep names a column twice: {names}", field="keep")
    return tuple(names)


def output_columns(bundle: ModelBundle, keep: Sequence[str] = ()) -> list[str]:
    """The output's columns: kept columns, ``prediction``, one ``proba_<label>`` per class, ``model_tag``."""
    probas = [] if bundle.task == "regression" else [f"proba_{label}" for label in bundle.label_names or []]
    return [*keep, "prediction", *probas, TAG_COLUMN]


def check_columns(bundle: ModelBundle, columns: Sequence[str], keep: Sequence[str], file: str | None) -> None:
    """Refuse an input that lacks a feature or a kept column, or a kept column named like an output.

    Raises:
        SchemaError: A feature is missing (names it and the file).
        DataError: A kept column is missing.
        ConfigError: A kept column would collide with an output column.
    """
    present = set(columns)
    missing = [n for n in bundle.feature_names if n not in present]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise SchemaError(f"missing column {missing[0]!r}{more} in {file or 'the input'}; the model takes: "
                          f"{', '.join(bundle.feature_names)}", field=missing[0], file=file)
    taken = {*output_columns(bundle), *ERROR_COLUMNS, *ORIGIN_COLUMNS, "row"}
    clash = [n for n in keep if n in taken]
    if clash:
        raise ConfigError(f"--keep column {clash[0]!r} has the name of an output column; rename it first",
                          field=clash[0])
    for name in keep:
        if name not in present:
            raise DataError(f"--keep column {name!r} is not in {file or 'the input'}; columns are: "
                            f"{', '.join(map(str, columns))}", field=name, file=file)


@dataclass
class RowFailure:
    """One row the schema refused: its position in the batch, the column at fault and why."""

    position: int
    field: str | None
    message: str


def infer_rows(bundle: ModelBundle, X: pd.DataFrame, on_error: str,
               name_row: Callable[[int], str]) -> tuple[np.ndarray, Prediction | None, list[RowFailure]]:
    """Score a batch of feature columns, isolating the rows the schema refuses.

    Args:
        bundle: The model.
        X: The feature columns.
        on_error: ``fail`` re-raises the first row error, its message naming the row with
            ``name_row`` and its ``row`` the batch position; ``skip`` sets bad rows aside.
        name_row: How a row at a batch position is named in messages (e.g. ``"file row 1234"``).

    Returns:
        The positions scored (ascending), their prediction (``None`` if none) and the failures.

    Raises:
        KitError: An error that is not about one row (a missing column), or any row error with
            ``on_error="fail"``.
    """
    spans: list[tuple[int, Prediction]] = []
    failures: list[RowFailure] = []

    def run(lo: int, hi: int) -> None:
        if lo >= hi:
            return
        try:
            spans.append((lo, bundle.infer(X.iloc[lo:hi])))
            return
        except KitError as exc:
            if exc.row is None or not 0 <= exc.row < hi - lo:
                raise
            bad = lo + exc.row
            message = _rename_row(exc.message, exc.row, name_row(bad))
            if on_error == "fail":
                exc.message, exc.row, exc.args = message, bad, (message,)
                raise
            failures.append(RowFailure(bad, exc.field, message))
        run(lo, bad)
        mid = (bad + 1 + hi) // 2
        run(bad + 1, mid)
        run(mid, hi)

    run(0, len(X))
    if not spans:
        return np.zeros(0, dtype=np.int64), None, sorted(failures, key=lambda f: f.position)
    spans.sort(key=lambda s: s[0])
    positions = np.concatenate([np.arange(lo, lo + len(p)) for lo, p in spans])
    return positions, _concat([p for _, p in spans]), sorted(failures, key=lambda f: f.position)


def _rename_row(message: str, row: int, name: str) -> str:
    """The message with its batch-relative ``row N`` replaced by ``name``, or ``name`` appended."""
    renamed, n = re.subn(rf"\brow {row}\b", name, message, count=1)
    return renamed if n else f"{message} ({name})"


def _concat(parts: list[Prediction]) -> Prediction:
    from kit.prediction import Prediction

    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if first.values is not None:
        return Prediction(values=np.concatenate([p.values for p in parts if p.values is not None]))
    labels = [label for p in parts for label in (p.labels or [])]
    proba = np.concatenate([p.probabilities for p in parts if p.probabilities is not None])
    return Prediction(labels=labels, probabilities=proba, label_names=first.label_names)


def result_frame(bundle: ModelBundle, frame: pd.DataFrame, positions: np.ndarray, prediction: Prediction | None,
                 keep: Sequence[str], tag: str) -> pd.DataFrame:
    """The output rows for the scored positions of ``frame``: kept columns, prediction, probabilities, tag."""
    out = _kept(frame, positions, keep)
    if prediction is not None:
        scored = prediction.to_frame()
    else:
        scored = pd.DataFrame({c: pd.Series([], dtype=object if c == "prediction" else np.float64)
                               for c in output_columns(bundle)[:-1]})
    for column in scored.columns:
        out[column] = scored[column].to_numpy()
    out[TAG_COLUMN] = tag
    return out


def error_frame(frame: pd.DataFrame, failures: list[RowFailure], keep: Sequence[str],
                where: dict[str, Any]) -> pd.DataFrame:
    """The error rows: kept columns, where each row came from (``where``: column → values per position), reason."""
    positions = [f.position for f in failures]
    out = _kept(frame, positions, keep)
    for column, values in where.items():
        out[column] = np.asarray(values)[positions] if len(positions) else np.asarray(values)[:0]
    out["error_field"] = [f.field for f in failures]
    out["error"] = [f.message for f in failures]
    return out


def _kept(frame: pd.DataFrame, positions: Any, keep: Sequence[str]) -> pd.DataFrame:
    if not keep:
        return pd.DataFrame(index=range(len(positions)))
    kept: pd.DataFrame = frame[list(keep)].iloc[positions].reset_index(drop=True)
    return kept
