"""The executor side of Spark scoring: the shipped bundle, checked and loaded once per Python worker, scores batches.

The driver ships the bundle directory with ``SparkContext.addFile`` and pins the sha256 of every
file it verified (:class:`Shipped`). In each Python worker process the first batch checks the
local copy (``SparkFiles.get``) against those hashes, refuses any file that differs, loads the
bundle (which checks its own manifest again) and keeps it in :data:`_BUNDLES` for every later
batch and task that process runs (Spark reuses Python workers: ``spark.python.worker.reuse``).
:class:`Scorer` is the ``mapInPandas`` function: it calls the same ``infer_rows`` as the
in-process scorer, so the predictions are those of ``bundle.infer``.

This module imports pyspark only inside functions; only executors and the Spark driver load it.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import IntegrityError, KitError

if TYPE_CHECKING:
    import pandas as pd

    from kit.bundle import ModelBundle

MARK = "KIT-ERROR-JSON "
"""Prefix of the line a worker adds to a KitError's message, so the driver can raise the same error."""
FILE_COLUMN = "__kit_input_file"
ROW_COLUMN = "__kit_input_row"

_BUNDLES: dict[str, ModelBundle] = {}
LOADS: list[str] = []
"""Bundle keys this process loaded, in order: a process loads each bundle once (tests read it)."""


@dataclass(frozen=True)
class Shipped:
    """A bundle directory registered with ``addFile`` and the sha256 of each file the driver verified.

    Attributes:
        name: The directory's name for ``SparkFiles.get``.
        files: ``(file name, sha256)`` pairs, ``bundle.json`` and its ``.sha256`` included.
        key: sha256 of ``bundle.json`` (what identifies the bundle in the worker's cache).
    """

    name: str
    files: tuple[tuple[str, str], ...]
    key: str


def load_shipped(shipped: Shipped) -> tuple[ModelBundle, bool]:
    """The shipped bundle, checked against the driver's hashes and loaded on this worker's first call.

    Returns:
        The bundle, and whether this call loaded it (``False``: this process had it already).

    Raises:
        IntegrityError: A file is missing or differs from the one the driver verified (names it).
    """
    bundle = _BUNDLES.get(shipped.key)
    if bundle is not None:
        return bundle, False
    from pyspark import SparkFiles

    from kit.bundle import ModelBundle

    root = Path(SparkFiles.get(shipped.name))
    host = socket.gethostname()
    for name, digest in shipped.files:
        path = root / name
        if not path.is_file():
            raise IntegrityError(f"{name} of the shipped bundle {shipped.name} is missing on executor {host}",
                                 file=name)
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise IntegrityError(f"{name} of the shipped bundle {shipped.name} on executor {host} differs from the "
                                 "file the driver verified (sha256 mismatch); refusing to score with it", file=name)
    bundle = ModelBundle.load(root)
    _BUNDLES[shipped.key] = bundle
    LOADS.append(shipped.key)
    return bundle, True


@dataclass(frozen=True)
class Scorer:
    """The ``mapInPandas`` function: input batches (features, kept columns, origin) → output batches.

    Attributes:
        shipped: The bundle to load.
        keep: Kept columns.
        tag: The model tag written in ``model_tag``.
        on_error: ``fail`` or ``skip``.
        columns: Output columns in schema order.
        prediction: Spark type of ``prediction``: ``string``, ``long``, ``double`` or ``boolean``.
        with_errors: Whether the output carries the error columns (``on_error="skip"``).
        stats: Accumulators of rows read, batches scored and bundle loads, or ``None``.
    """

    shipped: Shipped
    keep: tuple[str, ...]
    tag: str
    on_error: str
    columns: tuple[str, ...]
    prediction: str
    with_errors: bool
    stats: Any = None

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """Score each batch; a KitError leaves with a JSON line the driver turns back into it."""
        try:
            bundle, loaded = load_shipped(self.shipped)
            if self.stats is not None and loaded:
                self.stats[2].add(1)
            for frame in batches:
                yield self.score(bundle, frame)
                if self.stats is not None:
                    self.stats[0].add(len(frame))
                    self.stats[1].add(1)
        except KitError as exc:
            payload = {"type": type(exc).__name__, **exc.to_dict()}
            exc.args = (f"{exc.message}\n{MARK}{json.dumps(payload, default=str)}",)
            raise

    def score(self, bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
        """One output batch: scored rows and, with ``on_error="skip"``, failed rows, in input order."""
        import numpy as np
        import pandas as pd

        from kit.package._scoring import error_frame, infer_rows, result_frame

        files = frame[FILE_COLUMN].to_numpy() if FILE_COLUMN in frame else None
        rows = frame[ROW_COLUMN].to_numpy() if ROW_COLUMN in frame else None

        def name_row(pos: int) -> str:
            where = f"of {files[pos]}" if files is not None else "of the input"
            return f"row {int(rows[pos])} {where}" if rows is not None else f"in a row {where}"

        try:
            positions, prediction, failures = infer_rows(bundle, frame[bundle.feature_names], self.on_error, name_row)
        except KitError as exc:
            pos = exc.row
            exc.row = int(rows[pos]) if rows is not None and pos is not None else None
            exc.file = str(files[pos]) if files is not None and pos is not None else exc.file
            raise
        out = result_frame(bundle, frame, positions, prediction, self.keep, self.tag)
        if self.with_errors:
            where = {"input_file": files if files is not None else np.full(len(frame), None, dtype=object),
                     "input_row": rows if rows is not None else np.full(len(frame), None, dtype=object)}
            bad = error_frame(frame, failures, self.keep, where)
            bad["model_tag"] = self.tag
            order = np.concatenate([positions, np.asarray([f.position for f in failures], dtype=np.int64)])
            out = pd.concat([out, bad], ignore_index=True).iloc[np.argsort(order, kind="stable")]
        return self._typed(out.reset_index(drop=True))

    def _typed(self, out: pd.DataFrame) -> pd.DataFrame:
        """The output in schema order; with failed rows in it, nullable types where they leave gaps."""
        import pandas as pd

        if self.prediction == "string":
            values, missing = out["prediction"], out["prediction"].isna()
            out["prediction"] = pd.Series([None if m else str(v) for v, m in zip(values, missing, strict=True)],
                                          dtype=object) if self.with_errors else values.astype(str)
        if not self.with_errors:
            return out[list(self.columns)]
        nullable: dict[str, Any] = {"long": pd.Int64Dtype(), "boolean": pd.BooleanDtype(),
                                    "double": pd.Float64Dtype()}
        if self.prediction in nullable:
            out["prediction"] = out["prediction"].astype(object).astype(nullable[self.prediction])
        for column in out.columns:
            if column.startswith("proba_") and column not in self.keep:
                out[column] = out[column].astype("Float64")
        out["input_row"] = pd.array([None if v is None or pd.isna(v) else int(v) for v in out["input_row"]],
                                    dtype="Int64")
        return out[list(self.columns)]
