"""Datasets: built-ins from scikit-learn's bundled loaders, your CSV/Parquet/DataFrame, splits.

Nothing is downloaded: the built-ins ship inside scikit-learn.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kit.config import TASKS, DataConfig
from kit.errors import DataError
from kit.summary import DataSummary
from kit.summary import py_value as _py

__all__ = ["BUILTINS", "DataLike", "DataSummary", "Dataset", "Part", "Splits", "detect_task", "load", "resolve"]

BUILTINS: dict[str, str] = {
    "breast_cancer": "binary",
    "wine": "multiclass",
    "digits": "multiclass",
    "diabetes": "regression",
}
"""Built-in dataset names and their tasks."""

MAX_CLASSES = 50


@dataclass(frozen=True)
class Part:
    """One split: features and the encoded target (class index, or float for regression)."""

    X: pd.DataFrame
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.X)


@dataclass(frozen=True)
class Splits:
    """Train / valid / test parts of one dataset, made with one seed."""

    train: Part
    valid: Part
    test: Part
    seed: int


@dataclass
class Dataset:
    """A loaded table with its target and task.

    Attributes:
        frame: Features and the target column.
        target: Name of the target column.
        task: ``binary``, ``multiclass`` or ``regression``.
        name: The built-in name or the file name.
        label_names: Class labels in class-index order (classification only).
        config: How it was loaded (``None`` for a Dataset built by hand); a bundle records it so
            a later step can load the same data and split it the same way.
    """

    frame: pd.DataFrame
    target: str
    task: str
    name: str
    label_names: list[Any] | None = None
    config: DataConfig | None = field(default=None, repr=False)
    _hash: str | None = field(default=None, repr=False)

    @property
    def feature_names(self) -> list[str]:
        """Feature column names, in the frame's order."""
        return [c for c in self.frame.columns if c != self.target]

    @property
    def X(self) -> pd.DataFrame:
        """The features."""
        return self.frame[self.feature_names]

    @property
    def y(self) -> np.ndarray:
        """The encoded target: class indices (int64) or float64 values."""
        return self.encode_target(self.frame[self.target])

    def encode_target(self, values: pd.Series) -> np.ndarray:
        """Encode target values to class indices (classification) or floats (regression)."""
        if self.task == "regression":
            return values.to_numpy(dtype=np.float64)
        assert self.label_names is not None
        index = {label: i for i, label in enumerate(self.label_names)}
        return np.array([index[_py(v)] for v in values], dtype=np.int64)

    def decode_target(self, y: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`encode_target`: class indices back to labels; values unchanged."""
        if self.task == "regression" or self.label_names is None:
            return y
        return np.array([self.label_names[i] for i in y], dtype=object)

    @property
    def data_hash(self) -> str:
        """sha256 of the table's content and column names (recorded in lineage)."""
        if self._hash is None:
            digest = hashlib.sha256()
            digest.update("\x1f".join(map(str, self.frame.columns)).encode())
            digest.update(pd.util.hash_pandas_object(self.frame, index=False).to_numpy().tobytes())
            self._hash = digest.hexdigest()
        return self._hash

    def split(self, valid_size: float | None = None, test_size: float | None = None, seed: int | None = None
              ) -> Splits:
        """Split into train / valid / test, stratified by class for classifiers.

        Args:
            valid_size: Share of all rows for validation (default: the dataset's config's).
            test_size: Share of all rows for the test set (default: the config's).
            seed: Split seed; the same seed gives the same split (default: the config's).

        Returns:
            The three parts.
        """
        from sklearn.model_selection import train_test_split

        config = self.config or DataConfig()
        valid_size = config.valid_size if valid_size is None else valid_size
        test_size = config.test_size if test_size is None else test_size
        seed = config.seed if seed is None else seed

        X, y = self.X, self.y
        strat = y if self.task != "regression" else None
        if strat is not None:
            counts = np.bincount(strat, minlength=len(self.label_names or []))
            rare = [self.label_names[i] for i, c in enumerate(counts) if c < 3] if self.label_names else []
            if rare:
                raise DataError(
                    f"class {rare[0]!r} of target {self.target!r} has fewer than 3 rows; a stratified "
                    "train/valid/test split needs at least 3 per class",
                    field=self.target,
                )
        idx = np.arange(len(X))
        rest, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=strat)
        rel_valid = valid_size / (1.0 - test_size)
        train, valid = train_test_split(
            rest, test_size=rel_valid, random_state=seed, stratify=None if strat is None else strat[rest]
        )

        def part(rows: np.ndarray) -> Part:
            return Part(X.iloc[rows].reset_index(drop=True), y[rows])

        return Splits(part(train), part(valid), part(test), seed)

    def summary(self) -> DataSummary:
        """What a user looks at first: rows, columns, dtypes, missing counts, class balance, constant columns."""
        from kit.summary import summarize

        return summarize(self)


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


def load(
    source: str | Path | pd.DataFrame | DataConfig = "breast_cancer",
    target: str | None = None,
    task: str = "auto",
) -> Dataset:
    """Load a built-in dataset, a CSV/Parquet file or a DataFrame.

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
        dataset = load(source.source, source.target, source.task)
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
                f"unknown dataset {str(source)!r}: use one of {', '.join(BUILTINS)} or a CSV/Parquet path",
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


DataLike = Dataset | DataConfig | str | Path | pd.DataFrame
"""What a step accepts as data: a loaded Dataset, a DataConfig, a built-in name, a file path or a DataFrame."""


def resolve(data: DataLike, config: DataConfig | None = None) -> tuple[Dataset, DataConfig]:
    """Turn any accepted data argument into a dataset and the DataConfig that loads and splits it.

    Args:
        data: A :class:`Dataset`, a :class:`~kit.config.DataConfig`, a built-in name, a file path or
            a DataFrame.
        config: Split and loading settings for a name, path or frame (its ``source`` is replaced),
            or for a Dataset loaded by hand; ignored when ``data`` is a DataConfig.

    Returns:
        The dataset and its config (``dataset.config`` is set to it).
    """
    if isinstance(data, DataConfig):
        return load(data), data
    if isinstance(data, Dataset):
        chosen = config or data.config or DataConfig(source=data.name, target=data.target, task=data.task)
        data.config = data.config or chosen
        return data, chosen
    base = config or DataConfig()
    if isinstance(data, pd.DataFrame):
        dataset = load(data, base.target, base.task)
        chosen = base.replace(source="dataframe", target=dataset.target, task=base.task)
    else:
        chosen = base.replace(source=str(data))
        dataset = load(chosen)
    dataset.config = chosen
    return dataset, chosen
