"""Tables: built-ins from scikit-learn's bundled loaders, your CSV/Parquet/DataFrame, task detection.

Nothing is downloaded: the built-ins ship inside scikit-learn.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kit.config import TASKS, DataConfig
from kit.data._dataset import Dataset
from kit.errors import DataError
from kit.summary import py_value as _py

BUILTINS: dict[str, str] = {
    "breast_cancer": "binary",
    "wine": "multiclass",
    "digits": "multiclass",
    "diabetes": "regression",
}
"""Built-in dataset names and their tasks."""

MAX_CLASSES = 50


def _load_builtin(name: str) -> tuple[pd.DataFrame, str, list[Any] | None]:
    from sklearn import datasets

    loaders: dict[str, Callable[..., Any]] = {
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "digits": datasets.load_digits,
        "diabetes": datasets.load_diabetes,
    }
    bunch = loaders[name](as_frame=True)
    frame = bunch.frame.copy()
    labels = None
    if BUILTINS[name] != "regression":
        names = [_py(n) for n in bunch.target_names]
        frame["target"] = [names[int(i)] for i in frame["target"]]
        labels = names
    return frame, "target", labels


def _read_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"no such file: {path}", file=str(path))
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".txt", ".tsv"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise DataError(f"cannot read {path.name}: use a .csv or .parquet file", file=str(path))
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path.name} is empty: no header and no rows", file=str(path)) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"cannot parse {path.name}: {exc}", file=str(path)) from exc
    if frame.shape[1] == 0 or len(frame) == 0:
        raise DataError(f"{path.name} has no data rows", file=str(path))
    return frame


def _check_columns(frame: pd.DataFrame, target: str, where: str, text_file: bool = False) -> None:
    """Refuse all-missing columns and text inside numeric-looking columns, naming them (and the file line)."""
    for name in frame.columns:
        s = frame[name]
        if s.isna().all():
            raise DataError(f"column {name!r} in {where} has no values (all missing)", field=str(name))
        if not pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) and name != target:
            present = s.dropna()
            as_num = pd.to_numeric(present, errors="coerce")
            bad = as_num.isna()
            # Mostly numbers with a few words: a typo, not a category.
            if bad.sum() > 0 and bad.mean() <= 0.2 and len(present) >= 5:
                row = int(present.index[bad.to_numpy()][0])
                at = f"line {row + 2} (data row {row})" if text_file else f"row {row}"  # line 1 is the header
                raise DataError(f"column {name!r} in {where} is numeric but {at} holds {present[row]!r}",
                                field=str(name), row=row)


def detect_task(values: pd.Series) -> str:
    """Guess the task from the target column.

    Text, boolean and category targets are classification; integer-valued numbers with at
    most 20 distinct values are classification; anything else is regression.
    """
    s = values.dropna()
    n_unique = s.nunique()
    numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    if numeric:
        integral = bool(np.all(np.mod(s.to_numpy(dtype=np.float64), 1.0) == 0))
        if not (integral and n_unique <= 20):
            return "regression"
    return "binary" if n_unique == 2 else "multiclass"


def load_table(
    source: str | Path | pd.DataFrame | DataConfig = "breast_cancer",
    target: str | None = None,
    task: str = "auto",
) -> Dataset:
    """Load a built-in table, a CSV/Parquet file or a DataFrame (:func:`kit.data.load` for any kind).

    Args:
        source: Built-in name, file path, DataFrame, or a :class:`DataConfig`.
        target: Target column (required for files and frames).
        task: ``auto`` to detect, or ``binary`` / ``multiclass`` / ``regression`` to override.

    Returns:
        The dataset with its task and labels.

    Raises:
        DataError: On an unknown name, unreadable or empty file, missing target column,
            all-missing column, text in a numeric column, or a target unfit for the task.
    """
    if isinstance(source, DataConfig):
        dataset = load_table(source.source, source.target, source.task)
        dataset.config = source.replace(target=dataset.target) if source.source != "dataframe" else source
        return dataset
    labels: list[Any] | None = None
    if isinstance(source, pd.DataFrame):
        frame, name, where = source.copy(), "dataframe", "the DataFrame"
    elif isinstance(source, str) and source in BUILTINS:
        frame, default_target, labels = _load_builtin(source)
        if target not in (None, default_target):
            raise DataError(f"built-in dataset {source!r} has target {default_target!r}, not {target!r}",
                            field="target")
        target, name, where = default_target, source, source
    else:
        path = Path(source)
        if not path.suffix and not path.exists():
            raise DataError(
                f"unknown dataset {str(source)!r}: use one of {', '.join([*BUILTINS, 'digits_images'])}, a "
                "CSV/Parquet path or a folder of images in class sub-folders",
                field="source",
            )
        frame, name, where = _read_file(path), path.name, path.name
    if len(frame) == 0:
        raise DataError(f"{where} has no rows", file=name)
    if target is None:
        raise DataError(f"target is required for {where}; columns are: {', '.join(map(str, frame.columns))}",
                        field="target")
    if target not in frame.columns:
        near = [str(c) for c in frame.columns if str(c).lower() == target.lower()] or difflib.get_close_matches(
            target, [str(c) for c in frame.columns], n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise DataError(f"target column {target!r} is not in {where}{hint} (columns: "
                        f"{', '.join(map(str, frame.columns))})", field=target)
    frame.columns = [str(c) for c in frame.columns]
    if frame.shape[1] < 2:
        raise DataError(f"{where} has no feature columns besides the target {target!r}", field=target)
    missing_y = frame[target].isna()
    if missing_y.any():
        row = int(np.flatnonzero(missing_y.to_numpy())[0])
        raise DataError(f"target {target!r} is missing in {int(missing_y.sum())} rows of {where} "
                        f"(first: row {row}); fill or drop them first", field=target, row=row)
    _check_columns(frame, target, where, text_file=where.lower().endswith((".csv", ".tsv", ".txt")))
    if task == "auto":
        task = BUILTINS.get(name, "") if labels is not None or name in BUILTINS else detect_task(frame[target])
    if task not in TASKS:
        raise DataError(f"task must be auto or one of {TASKS}, but got {task=}", field="task")
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(frame[target]):
            raise DataError(f"target {target!r} is not numeric, so it cannot be a regression target",
                            field=target)
        frame[target] = frame[target].astype(np.float64)
    elif labels is None:
        values = sorted({_py(v) for v in frame[target]}, key=lambda v: (str(type(v)), v))
        if len(values) < 2:
            raise DataError(f"target {target!r} has a single class {values[0]!r}; nothing to learn",
                            field=target)
        if len(values) > MAX_CLASSES:
            raise DataError(f"target {target!r} has {len(values)} classes (more than {MAX_CLASSES}); "
                            "pass task='regression' if it is a number", field=target)
        if task == "binary" and len(values) != 2:
            raise DataError(f"task is binary but target {target!r} has {len(values)} classes", field=target)
        labels = values
    config = DataConfig(source="dataframe" if isinstance(source, pd.DataFrame) else str(source), target=target,
                        task=task)
    return Dataset(frame.reset_index(drop=True), target, task, name, labels, config)
