"""Rows and backgrounds: validating raw rows, sampling a background, storing it in the bundle."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.errors import ConfigError, IntegrityError, SchemaError
from kit.explain._explanation import BACKGROUND_ARTIFACT, Explanation

if TYPE_CHECKING:
    from kit.bundle import ModelBundle


def rows_frame(bundle: ModelBundle, X: Any, what: str = "rows") -> pd.DataFrame:
    """Validate raw rows against the bundle's schema and return them as a DataFrame in schema order.

    Raises:
        SchemaError: For empty input, missing/extra columns or values the preprocessor refuses.
    """
    if X is None:
        raise SchemaError(f"no {what} given", field=what)
    cols, n = bundle.preprocessor.columns(X)
    if n == 0:
        raise SchemaError(f"no {what} to explain: the input is empty", field=what)
    frame = pd.DataFrame({name: np.asarray(cols[name], dtype=object) for name in bundle.feature_names})
    for name in bundle.feature_names:  # numeric columns back to numbers where they are
        if bundle.preprocessor.kinds_[name] == "numeric":
            converted = pd.to_numeric(frame[name], errors="coerce")
            if converted.notna().sum() == frame[name].notna().sum():
                frame[name] = converted
    bundle.transform(frame)  # raises SchemaError naming column and row
    return frame


def make_background(bundle: ModelBundle, X: Any, size: int = 100, kind: str = "sample",
                    seed: int = 0) -> pd.DataFrame:
    """A background sample of raw rows: a seeded random sample or a k-means summary.

    ``kmeans`` clusters the rows in network space and keeps the real row nearest to each of
    ``size`` centroids, so the background stays valid raw rows for every engine.

    Raises:
        ConfigError: For a bad ``size`` or ``kind``.
        SchemaError: If the rows do not match the schema.
    """
    if size < 1:
        raise ConfigError(f"background_size must be >= 1, but got {size=}", field="background_size")
    if kind not in ("sample", "kmeans"):
        raise ConfigError(f"background_kind must be 'sample' or 'kmeans', but got {kind=}", field="background_kind")
    frame = rows_frame(bundle, X, "background")
    if len(frame) <= size:
        return frame
    if kind == "sample":
        picked = np.sort(np.random.default_rng(seed).choice(len(frame), size, replace=False))
    else:
        from sklearn.cluster import KMeans

        x = bundle.transform(frame)
        km = KMeans(n_clusters=size, n_init=3, random_state=seed).fit(x)
        dist = ((x[:, None, :] - km.cluster_centers_[None, :, :]) ** 2).sum(axis=2)
        picked = np.unique(dist.argmin(axis=0))
    return frame.iloc[picked].reset_index(drop=True)


def stored_background(bundle: ModelBundle) -> pd.DataFrame | None:
    """The background :func:`attach` stored in the bundle, or ``None``."""
    blob = bundle.artifacts.get(BACKGROUND_ARTIFACT)
    if blob is None:
        return None
    try:
        doc = json.loads(blob)
        frame = pd.DataFrame(doc["rows"], columns=doc["columns"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{BACKGROUND_ARTIFACT} cannot be read: {exc}", file=BACKGROUND_ARTIFACT) from exc
    return frame


def _background_bytes(frame: pd.DataFrame) -> bytes:
    rows = [[None if v is None or (isinstance(v, float) and np.isnan(v)) else
             (v.item() if isinstance(v, np.generic) else v) for v in row]
            for row in frame.astype(object).itertuples(index=False)]
    doc = {"format": "kit.explain.background/1", "columns": list(frame.columns), "rows": rows}
    return json.dumps(doc, separators=(",", ":")).encode()


def attach(bundle: ModelBundle, explanation: Explanation) -> ModelBundle:
    """A copy of ``bundle`` storing the explanation's background and global importance.

    The background goes to the artifact ``explain_background.json`` (raw rows, JSON), the ranking
    and method to ``sections["explanation"]``; ``explain(bundle, rows)`` then needs no background.

    Raises:
        ConfigError: If the explanation was made for other features.
    """
    if list(explanation.feature_names) != bundle.feature_names:
        raise ConfigError("this explanation was made for other features than the bundle's", field="explanation")
    clone = bundle.with_section(explanation.section())
    clone.configs["explain"] = dict(explanation.config)
    clone.artifacts[BACKGROUND_ARTIFACT] = _background_bytes(explanation.background[bundle.feature_names])
    return clone
