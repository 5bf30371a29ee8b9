"""What :meth:`kit.preprocess.tabular.Preprocessor.transform` needs from the fitted state, built once.

A call of ``transform`` on one row cost 38 µs when it read the fitted dictionaries anew (the numeric
names, their positions and statistics, a category lookup per column) on every call; with the
:class:`Plan` built once per fitted state it costs 10 (``bundle.infer``'s fixed cost a call fell from
55 to 20 µs).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from kit.preprocess.tabular import Preprocessor


def transform_plan(pre: Preprocessor) -> Plan:
    """The plan of ``pre``'s fitted state, built on first use and kept on ``pre``.

    Rebuilt when a fitted attribute it reads is another object, with other contents, than the one it
    was built from (:meth:`~kit.preprocess.tabular.Preprocessor.fit` and ``from_dict`` set new ones).
    """
    pre._check_fitted()
    plan: Plan | None = pre.__dict__.get("_plan_cache")
    sources = (pre.feature_names_in_, pre.kinds_, pre.medians_, pre.means_, pre.scales_, pre.categories_,
               pre.modes_)
    if plan is None or plan.sources != sources:  # the same objects (identity first), or equal ones
        plan = Plan(pre, sources)
        pre.__dict__["_plan_cache"] = plan
    return plan


def standardize(values: np.ndarray, plan: Plan, out: np.ndarray) -> bool:
    """Impute and standardize numeric ``values`` (rows x numeric columns) into ``out``; ``False`` on an inf.

    ``values`` is the caller's own new array: it is standardized in place.
    """
    if not np.isfinite(values).all():  # one check for the common case: no missing or infinite value
        if np.isinf(values).any():
            return False
        values = np.where(np.isnan(values), plan.medians, values)
    values -= plan.means
    values /= plan.scales
    if plan.dense:
        out[...] = values
    else:
        out[:, plan.positions] = values
    return True


class Plan:
    """The fitted state in the shape ``Preprocessor.transform`` uses it (see :func:`transform_plan`).

    Attributes:
        sources: The fitted attributes it was built from.
        names: The feature names, as a set (a record holding exactly these takes the records path).
        numeric: Numeric feature names in schema order; ``get`` reads them from a record as a tuple.
        positions: Their output columns; ``dense``: they are all the output columns, in order.
        medians, means, scales: Their training statistics, as float64 rows.
        categorical: ``(name, offset, category -> output column, mode)`` per categorical feature.
    """

    def __init__(self, pre: Preprocessor, sources: tuple[Any, ...]) -> None:
        self.sources = sources
        self.names = frozenset(pre.feature_names_in_)
        self.numeric: list[str] = []
        positions: list[int] = []
        self.categorical: list[tuple[str, int, dict[str, int], str]] = []
        offset = 0
        for name in pre.feature_names_in_:
            if pre.kinds_[name] == "numeric":
                self.numeric.append(name)
                positions.append(offset)
                offset += 1
            else:
                categories = pre.categories_[name]
                index = {c: offset + i for i, c in enumerate(categories)}
                self.categorical.append((name, offset, index, pre.modes_[name]))
                offset += len(categories)
        # a record's numeric values as a tuple (itemgetter of one name returns the bare value)
        self.get: Callable[[dict[str, Any]], Any] = (operator.itemgetter(*self.numeric) if len(self.numeric) > 1
                                                     else lambda r: tuple(r[c] for c in self.numeric))
        self.positions = np.array(positions, dtype=np.intp)
        self.dense = positions == list(range(offset))
        self.medians = np.array([pre.medians_[c] for c in self.numeric], dtype=np.float64)
        self.means = np.array([pre.means_[c] for c in self.numeric], dtype=np.float64)
        self.scales = np.array([pre.scales_[c] for c in self.numeric], dtype=np.float64)
