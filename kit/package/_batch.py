"""Offline batch scoring of a file through the same predict path as the service (``bundle.infer``)."""

from __future__ import annotations

import os
from pathlib import Path

from kit.errors import ConfigError, KitError
from kit.package._resolve import served


def predict_file(tag: str | None, src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                 chunk_size: int = 10_000, progress: bool = True) -> int:
    """Score a CSV file in chunks through ``bundle.infer`` (offline batch inference).

    A target column in the input, if present, is ignored. Errors name the file row.

    Returns:
        Number of rows scored.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from kit.bundle import ModelBundle

    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, but got {chunk_size=}", field="chunk_size")
    ref = served(tag)
    bundle = ModelBundle.load(ref.path)
    total = 0
    out = Path(dst)
    with tqdm(desc=f"scoring {Path(src).name}", unit="rows", disable=not progress) as bar:
        for i, chunk in enumerate(pd.read_csv(src, chunksize=chunk_size)):
            try:
                scored = bundle.infer(chunk.drop(columns=[bundle.target], errors="ignore")).to_frame()
            except KitError as exc:
                if exc.row is not None:
                    exc.row += total
                    exc.message = f"{exc.message} (file row {exc.row})"
                exc.file = str(src)
                raise
            scored.to_csv(out, mode="w" if i == 0 else "a", header=i == 0, index=False)
            total += len(chunk)
            bar.update(len(chunk))
    return total
