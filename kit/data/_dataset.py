"""A dataset and its splits: what every kind of data (tables, images) loads into."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kit.config import DataConfig
from kit.errors import DataError
from kit.summary import DataSummary
from kit.summary import py_value as _py


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

    def class_counts(self, label_names: Sequence[Any]) -> dict[str, list[Any]]:
        """Rows per class in each part: ``{"labels", "train", "valid", "test"}``, lists in label order."""
        k = len(label_names)
        counts = {name: np.bincount(np.asarray(part.y, dtype=np.int64), minlength=k).tolist()
                  for name, part in (("train", self.train), ("valid", self.valid), ("test", self.test))}
        return {"labels": list(label_names), **counts}


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
