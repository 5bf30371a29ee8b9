"""The tabular Preprocessor: numeric standardization, missing values, categorical one-hot; JSON round trip.

Policies, stated once:

* numeric columns: missing values (``None``/``NaN``) are imputed with the training median, then
  standardized with the training mean and standard deviation (a constant column gets scale 1);
  infinite values are refused.
* categorical columns (text, boolean, pandas category): values are compared as strings; missing
  values are imputed with the most frequent training category; a category never seen in
  training is refused naming the column and row (``unknown_category="error"``, the default) or
  encoded as all zeros (``"ignore"``).
* columns are matched by name, so their order does not matter; a missing or unexpected column is
  refused by name.
* a column with a single value in the training rows (missing cells aside) is left out of the
  features: it carries nothing to learn. It is recorded in ``constant_`` (and the bundle's schema),
  input may still hold it (it is ignored) or leave it out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kit.errors import DataError, NotFittedError, SchemaError
from kit.preprocess._plan import Plan, standardize, transform_plan

Columns = dict[str, Any]
FORMAT = "kit.preprocessor/1"


def _is_numeric(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s))


def cat_str(value: Any) -> str:
    """A categorical value as the string the preprocessor compares (``1.0`` -> ``"1"``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_missing(value: Any) -> bool:
    """Whether a raw value counts as missing (``None`` or a float NaN)."""
    return value is None or (isinstance(value, float) and np.isnan(value))


class Preprocessor:
    """Turns raw rows into the float32 matrix the network sees.

    Fitted attributes end in ``_`` and exist only after :meth:`fit`.

    Args:
        unknown_category: ``"error"`` or ``"ignore"`` (see the module docstring).
    """

    def __init__(self, unknown_category: str = "error") -> None:
        if unknown_category not in ("error", "ignore"):
            raise DataError(f"unknown_category must be 'error' or 'ignore', but got {unknown_category=}",
                            field="unknown_category")
        self.unknown_category = unknown_category

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame) -> Preprocessor:
        """Learn column kinds and statistics from the training features only.

        Args:
            X: Training features (no target column).

        Returns:
            self, fitted.
        """
        from kit.summary import constant_columns

        if len(X) == 0:
            raise DataError("cannot fit a preprocessor on zero rows")
        self.constant_: dict[str, Any] = constant_columns(X)
        X = X[[c for c in X.columns if str(c) not in self.constant_]]
        if X.shape[1] == 0:
            raise DataError(f"every feature column is constant in the training rows ({', '.join(self.constant_)}); "
                            "nothing to learn from", field=next(iter(self.constant_), None))
        self.feature_names_in_: list[str] = [str(c) for c in X.columns]
        self.kinds_: dict[str, str] = {}
        self.medians_: dict[str, float] = {}
        self.means_: dict[str, float] = {}
        self.scales_: dict[str, float] = {}
        self.categories_: dict[str, list[str]] = {}
        self.modes_: dict[str, str] = {}
        numeric = [c for c in X.columns if _is_numeric(X[c])]
        stats = self._numeric_stats(X[numeric], [str(c) for c in numeric])
        for column, name in zip(X.columns, self.feature_names_in_, strict=True):
            if name in stats:
                self.kinds_[name] = "numeric"
                self.medians_[name], self.means_[name], std = stats[name]
                self.scales_[name] = std if std > 1e-12 else 1.0
            elif X[column].isna().all():
                raise DataError(f"column {name!r} has no values in the training split", field=name)
            else:
                strings = X[column].dropna().map(cat_str)
                self.kinds_[name] = "categorical"
                self.categories_[name] = sorted(strings.unique().tolist())
                self.modes_[name] = str(strings.value_counts().sort_index().idxmax())
        self.output_names_: list[str] = []
        for name in self.feature_names_in_:
            if self.kinds_[name] == "numeric":
                self.output_names_.append(name)
            else:
                self.output_names_.extend(f"{name}={c}" for c in self.categories_[name])
        return self

    @staticmethod
    def _numeric_stats(X: pd.DataFrame, names: list[str]) -> dict[str, tuple[float, float, float]]:
        """Median, mean and standard deviation of every numeric column in one vectorized pass.

        Raises:
            DataError: Naming the first column (in schema order) with no values or an infinite one.
        """
        if not names:
            return {}
        values = X.to_numpy(dtype=np.float64)
        missing = np.isnan(values)
        empty, infinite = missing.all(axis=0), np.isinf(values).any(axis=0)
        for j, name in enumerate(names):
            if empty[j]:
                raise DataError(f"column {name!r} has no values in the training split", field=name)
            if infinite[j]:
                row = int(np.flatnonzero(np.isinf(values[:, j]))[0])
                raise DataError(f"column {name!r} holds an infinite value at row {row}", field=name, row=row)
        if missing.any():
            with np.errstate(invalid="ignore"):
                median, mean, std = np.nanmedian(values, axis=0), np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        else:
            median, mean, std = np.median(values, axis=0), values.mean(axis=0), values.std(axis=0)
        return {name: (float(median[j]), float(mean[j]), float(std[j])) for j, name in enumerate(names)}

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return hasattr(self, "output_names_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("this Preprocessor is not fitted yet; call fit(train_features) first")

    @property
    def n_features_out(self) -> int:
        """Width of the transformed matrix."""
        self._check_fitted()
        return len(self.output_names_)

    @property
    def network_input(self) -> int | tuple[int, ...]:
        """What a network builder is called with first: the input width (an image preprocessor: its shape)."""
        return self.n_features_out

    # -- input checking ------------------------------------------------------------------------
    def columns(self, X: Any) -> tuple[Columns, int]:
        """Validate raw input and return it column by column.

        Accepts a list of dicts (records), one dict, a DataFrame, or a 2-D array whose columns
        follow the schema order.

        Returns:
            The columns by name and the number of rows.

        Raises:
            SchemaError: On a missing or unexpected column, a non-dict record, or a wrong shape.
        """
        self._check_fitted()
        names = self.feature_names_in_
        if isinstance(X, Mapping):
            X = [X]
        if isinstance(X, pd.DataFrame):
            self._check_names([str(c) for c in X.columns], row=None)
            return {n: X[n].to_numpy() for n in names}, len(X)
        if isinstance(X, np.ndarray):
            if X.ndim == 1:
                X = X.reshape(1, -1)
            if X.ndim != 2 or X.shape[1] != len(names):
                raise SchemaError(f"expected an array of shape (rows, {len(names)}) in schema order, "
                                  f"but got shape {X.shape}", field="shape")
            return {n: X[:, i] for i, n in enumerate(names)}, X.shape[0]
        if isinstance(X, Sequence) and not isinstance(X, str | bytes):
            expected = set(names)
            for i, record in enumerate(X):
                if not isinstance(record, Mapping):
                    raise SchemaError(f"row {i} is a {type(record).__name__}, expected an object of "
                                      "feature: value", row=i)
                if record.keys() != expected:
                    self._check_names(list(record), row=i)
            return {n: [r[n] for r in X] for n in names}, len(X)
        raise SchemaError(f"cannot read rows from a {type(X).__name__}; pass records (list of dicts), "
                          "a DataFrame or a 2-D array", field="rows")

    def _check_names(self, given: list[str], row: int | None) -> None:
        where = f" in row {row}" if row is not None else ""
        expected = set(self.feature_names_in_) | set(getattr(self, "constant_", {}))  # constants may be sent
        missing = [n for n in self.feature_names_in_ if n not in set(given)]
        if missing:
            raise SchemaError(f"missing column {missing[0]!r}{where}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                              field=missing[0], row=row)
        extra = [n for n in given if n not in expected]
        if extra:
            raise SchemaError(f"unexpected column {extra[0]!r}{where}; the model takes: "
                              f"{', '.join(self.feature_names_in_)}", field=extra[0], row=row)

    # -- transforming --------------------------------------------------------------------------
    def transform(self, X: Any) -> np.ndarray:
        """Transform raw rows into a float32 matrix of width :attr:`n_features_out`.

        Numeric columns are converted, imputed and standardized together (one float64 matrix), and
        categories are one-hot encoded by lookup, straight from the records, a frame or an array. Input
        with a bad value goes through the column-by-column path, which names the first bad column (in
        schema order) and row; both paths compute the same float64 arithmetic, so their output is
        identical. The fitted state is read once into a plan (statistics as arrays, a getter of the
        numeric fields, a lookup per categorical column) and reused while the fitted attributes stay the
        same objects: set them anew (:meth:`fit`, :meth:`from_dict`), not in place.

        Raises:
            NotFittedError: Before :meth:`fit`.
            SchemaError: On missing/extra columns, text in a numeric column, an infinite value,
                or an unseen category (with ``unknown_category="error"``), naming column and row.
        """
        plan = transform_plan(self)
        if isinstance(X, Mapping):
            X = [X]
        if isinstance(X, list) and all(type(r) is dict and r.keys() == plan.names for r in X):
            return self._transform_records(X, plan)  # the service's and most callers' case
        cols, n = self.columns(X)
        out = np.zeros((n, len(self.output_names_)), dtype=np.float32)
        for name, offset, index, mode in plan.categorical:
            if not self._one_hot(cols[name], out, offset, index, mode):
                return self._transform_columns(cols, n)  # an unseen category: named in schema order
        if plan.numeric:
            try:
                values = np.array([cols[name] for name in plan.numeric], dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                return self._transform_columns(cols, n)
            if values.shape != (len(plan.numeric), n) or not standardize(values.T, plan, out):
                return self._transform_columns(cols, n)
        return out

    def _transform_records(self, X: list[dict[str, Any]], plan: Plan) -> np.ndarray:
        """:meth:`transform` of records holding exactly the features: no column dict, one getter per row."""
        n = len(X)
        out = np.zeros((n, len(self.output_names_)), dtype=np.float32)
        if not n:
            return out
        for name, offset, index, mode in plan.categorical:
            if not self._one_hot([r[name] for r in X], out, offset, index, mode):
                return self._transform_columns(self.columns(X)[0], n)
        if plan.numeric:
            get = plan.get
            try:
                values = np.array([get(r) for r in X], dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                return self._transform_columns(self.columns(X)[0], n)
            if values.shape != (n, len(plan.numeric)) or not standardize(values, plan, out):
                return self._transform_columns(self.columns(X)[0], n)
        return out

    def _one_hot(self, values: Any, out: np.ndarray, offset: int, index: dict[str, int], mode: str) -> bool:
        """Set the one-hot block of one column; ``False`` on an unseen category under the ``error`` policy.

        ``index`` maps each training category to its output column (``offset`` + its position).
        """
        ignore = self.unknown_category == "ignore"
        for i, value in enumerate(values):
            j = index.get(mode if is_missing(value) else cat_str(value))
            if j is not None:
                out[i, j] = 1.0
            elif not ignore:
                return False
        return True

    def _transform_columns(self, cols: Columns, n: int) -> np.ndarray:
        """Column by column, raising on the first bad value in schema order (see :meth:`transform`)."""
        out = np.zeros((n, len(self.output_names_)), dtype=np.float32)
        j = 0
        for name in self.feature_names_in_:
            values = cols[name]
            if self.kinds_[name] == "numeric":
                x = self._numeric(name, values)
                x = np.where(np.isnan(x), self.medians_[name], x)
                out[:, j] = (x - self.means_[name]) / self.scales_[name]
                j += 1
            else:
                cats = self.categories_[name]
                strings = np.array([self.modes_[name] if is_missing(v) else cat_str(v) for v in values],
                                   dtype=object)
                block = strings[:, None] == np.array(cats, dtype=object)[None, :]
                unseen = ~block.any(axis=1)
                if unseen.any() and self.unknown_category == "error":
                    row = int(np.flatnonzero(unseen)[0])
                    shown = cats if len(cats) <= 20 else [*cats[:20], "..."]
                    raise SchemaError(f"column {name!r} row {row}: unseen category {strings[row]!r}; "
                                      f"known: {', '.join(shown)}", field=name, row=row)
                out[:, j:j + len(cats)] = block
                j += len(cats)
        return out

    def fit_transform(self, X: pd.DataFrame) -> np.ndarray:
        """Fit on ``X`` and transform it."""
        return self.fit(X).transform(X)

    def _numeric(self, name: str, values: Any) -> np.ndarray:
        try:
            x = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            x = np.empty(len(values), dtype=np.float64)
            for i, v in enumerate(values):
                if is_missing(v):
                    x[i] = np.nan
                    continue
                try:
                    if isinstance(v, str | bytes) and not v.strip():
                        raise ValueError
                    x[i] = float(v)
                except (TypeError, ValueError, OverflowError):
                    raise SchemaError(f"column {name!r} row {i}: expected a number, got {v!r:.40}",
                                      field=name, row=i) from None
        if x.ndim != 1:
            raise SchemaError(f"column {name!r}: expected one number per row", field=name)
        bad = np.isinf(x)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SchemaError(f"column {name!r} row {row}: infinite values are not allowed", field=name, row=row)
        return x

    # -- schema and persistence ----------------------------------------------------------------
    def schema(self) -> list[dict[str, Any]]:
        """The input contract: one entry per feature with its kind and allowed categories."""
        self._check_fitted()
        out: list[dict[str, Any]] = []
        for name in self.feature_names_in_:
            if self.kinds_[name] == "numeric":
                out.append({"name": name, "kind": "numeric", "type": "number",
                            "median": self.medians_[name]})
            else:
                out.append({"name": name, "kind": "categorical", "type": "string",
                            "categories": self.categories_[name], "default": self.modes_[name]})
        return out

    def example(self) -> dict[str, Any]:
        """One valid record built from training medians and modes."""
        self._check_fitted()
        return {n: (self.medians_[n] if self.kinds_[n] == "numeric" else self.modes_[n])
                for n in self.feature_names_in_}

    def to_dict(self) -> dict[str, Any]:
        """Fitted state as a JSON-able dict."""
        self._check_fitted()
        return {
            "format": FORMAT,
            "unknown_category": self.unknown_category,
            "feature_names_in": self.feature_names_in_,
            "kinds": self.kinds_,
            "medians": self.medians_,
            "means": self.means_,
            "scales": self.scales_,
            "categories": self.categories_,
            "modes": self.modes_,
            "output_names": self.output_names_,
            "constant": self.constant_,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Preprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_dict` output (an image preprocessor's too)."""
        from kit.preprocess.image import IMAGE_FORMAT, ImagePreprocessor

        if state.get("format") == IMAGE_FORMAT:
            return ImagePreprocessor.from_dict(state)
        if state.get("format") != FORMAT:
            raise DataError(f"not a kit preprocessor state (format {state.get('format')!r}, expected {FORMAT!r})",
                            field="format")
        self = Preprocessor(state["unknown_category"])
        self.feature_names_in_ = list(state["feature_names_in"])
        self.kinds_ = dict(state["kinds"])
        self.medians_ = {k: float(v) for k, v in state["medians"].items()}
        self.means_ = {k: float(v) for k, v in state["means"].items()}
        self.scales_ = {k: float(v) for k, v in state["scales"].items()}
        self.categories_ = {k: list(v) for k, v in state["categories"].items()}
        self.modes_ = dict(state["modes"])
        self.output_names_ = list(state["output_names"])
        self.constant_ = dict(state.get("constant", {}))  # bundles before constant columns were dropped have none
        return self

    def to_json(self) -> str:
        """Fitted state as a JSON string (exact: floats round-trip bit for bit)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        """Rebuild from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        if not self.is_fitted:
            return f"Preprocessor(unknown_category={self.unknown_category!r}, fitted=False)"
        n_cat = sum(k == "categorical" for k in self.kinds_.values())
        return (f"Preprocessor({len(self.feature_names_in_)} features: {len(self.kinds_) - n_cat} numeric, "
                f"{n_cat} categorical -> {len(self.output_names_)} outputs)")

