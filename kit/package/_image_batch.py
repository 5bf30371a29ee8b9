"""Scoring image files: one image, a ZIP of images or a folder, to a CSV of (file, prediction, probabilities).

The service's ``/predict_file`` (an image bundle) and ``kit predict --tag TAG FOLDER_OR_ZIP out.csv``
share this code: files are decoded for the model (:meth:`~kit.preprocess.ImagePreprocessor.decode_row`)
and scored through ``bundle.infer`` in batches, so each file gets what ``/predict`` would answer for
it. A ZIP is read member by member with limits on the member count and the unpacked size (a ZIP
bomb is refused, naming the limit); a file that is not a usable image names the file.

Memory is flat in the number of files: one batch of files is read and decoded at a time, and
``kit predict`` appends each batch's predictions to the output CSV (written under a temporary name,
renamed when complete) instead of keeping them. A folder is walked one directory's sorted listing at
a time (counted first, for the progress bar); a ZIP's directory is read first (about 200 bytes a
member). See ``bench/images_folder.py`` for the peak memory on 12,500 and 50,000 files.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.errors import ConfigError, DataError, KitError, SchemaError

if TYPE_CHECKING:
    from kit.bundle import ModelBundle
    from kit.package._scoring import BatchSummary

MAX_MEMBERS = 100_000
"""Most files one ZIP may hold."""
MAX_UNPACKED = 2 * 2**30
"""Most bytes a ZIP may unpack to in all (2 GiB)."""
ZIP_MAGIC = b"PK\x03\x04"
FILE_COLUMN = "file"


def is_zip(data: bytes) -> bool:
    """Whether ``data`` starts like a ZIP archive."""
    return data[:4] == ZIP_MAGIC


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in Path(name).parts)


class ZipImages:
    """The files of a ZIP (hidden files and folders left out), in archive order; ``len`` is their count.

    The directory is read and checked against the limits when this is made; iterating reads the
    members one at a time.

    Raises:
        DataError: Not a readable ZIP, too many members or too many unpacked bytes.
    """

    def __init__(self, data: bytes | Path) -> None:
        self.data = data
        with self._open() as archive:
            self.infos = [i for i in archive.infolist() if not i.is_dir() and not _hidden(i.filename)]
        if len(self.infos) > MAX_MEMBERS:
            raise DataError(f"the ZIP holds {len(self.infos):,} files, more than the limit of {MAX_MEMBERS:,}",
                            field="file")
        unpacked = sum(i.file_size for i in self.infos)
        if unpacked > MAX_UNPACKED:
            raise DataError(f"the ZIP unpacks to {unpacked:,} bytes, more than the limit of {MAX_UNPACKED:,}",
                            field="file")

    def _open(self) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(io.BytesIO(self.data) if isinstance(self.data, bytes) else self.data)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"the upload is not a readable ZIP archive: {exc}", field="file") from None

    def __len__(self) -> int:
        return len(self.infos)

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        with self._open() as archive:
            for info in self.infos:
                try:
                    with archive.open(info) as member:
                        blob = member.read(info.file_size + 1)
                except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                    raise SchemaError(f"{info.filename}: cannot be read from the ZIP: {exc}",
                                      field=FILE_COLUMN) from None
                if len(blob) > info.file_size:  # the header understated the size: refuse rather than trust it
                    raise SchemaError(f"{info.filename}: unpacks to more bytes than the ZIP says", field=FILE_COLUMN)
                yield info.filename, blob


def zip_members(data: bytes | Path) -> Iterator[tuple[str, bytes]]:
    """The files of a ZIP, read one at a time (see :class:`ZipImages`).

    Raises:
        DataError: Not a readable ZIP, too many members or too many unpacked bytes.
    """
    return iter(ZipImages(data))


class FolderImages:
    """Every non-hidden file under a folder, recursively, in sorted path order, named relative to it.

    ``len`` counts them (one walk that keeps nothing); iterating walks again, one directory's sorted
    listing at a time, so the names are not all held at once. Symbolic links to folders are not
    followed (as :meth:`pathlib.Path.rglob`).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = sum(1 for _ in self._walk(root, ""))

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[str, Path]]:
        return self._walk(self.root, "")

    def _walk(self, folder: Path | str, prefix: str) -> Iterator[tuple[str, Path]]:
        with os.scandir(folder) as listing:
            entries = sorted((e for e in listing if not _hidden(e.name)), key=lambda e: e.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, f"{prefix}{entry.name}/")
            elif entry.is_file():
                yield prefix + entry.name, Path(entry.path)


def upload_items(data: bytes, name: str = "image") -> Iterator[tuple[str, bytes]]:
    """The images of an upload: the members of a ZIP, or the one image it is."""
    if is_zip(data):
        yield from zip_members(data)
    else:
        yield name, data


def iter_scores(bundle: ModelBundle, items: Iterable[tuple[str, Any]], *, batch_size: int = 256,
                on_error: str = "fail", progress: Any = None, lock: AbstractContextManager[Any] | None = None
                ) -> Iterator[tuple[pd.DataFrame, list[dict[str, str]]]]:
    """Score image files through ``bundle.infer``, ``batch_size`` at a time: each batch's predictions and failures.

    Args:
        bundle: An image bundle.
        items: ``(file name, bytes or path)`` pairs, read one at a time.
        batch_size: Images per ``infer`` call.
        on_error: ``fail``: the first unusable file stops the run, named; ``skip``: it is set aside
            with the reason.
        progress: A tqdm-like bar advanced by one per file, or ``None``.
        lock: Held around each ``infer`` call only, not while files are read and decoded (the
            service's model lock: ``/predict`` requests run between an upload's batches).

    Yields:
        The batch's predictions (``file``, ``prediction``, ``proba_<label>``...) and its failures
        (``{"file", "error"}``); the last batch may hold failures only.

    Raises:
        SchemaError: With ``on_error="fail"``, naming the first unusable file.
    """
    if bundle.kind != "image":
        raise ConfigError("image files need an image model; this bundle takes a table (score a CSV instead)",
                          field="model")
    pre: Any = bundle.preprocessor
    failed: list[dict[str, str]] = []
    names: list[str] = []
    pixels: list[np.ndarray] = []
    for name, value in items:
        try:
            decoded = pre.decode_row(value.read_bytes() if isinstance(value, Path) else value, len(names))
        except (KitError, OSError) as exc:
            message = f"{name}: {str(exc).split(': ', 1)[-1]}"
            if on_error == "fail":
                raise SchemaError(message, field=FILE_COLUMN) from None
            failed.append({FILE_COLUMN: name, "error": message})
        else:
            names.append(name)
            pixels.append(decoded.pixels)
        if progress is not None:
            progress.update(1)
        if len(names) >= batch_size:
            yield _scored(bundle, names, pixels, lock), failed
            names, pixels, failed = [], [], []
    if names or failed:
        yield _scored(bundle, names, pixels, lock), failed


def _scored(bundle: ModelBundle, names: list[str], pixels: list[np.ndarray],
            lock: AbstractContextManager[Any] | None = None) -> pd.DataFrame:
    pre: Any = bundle.preprocessor
    batch = np.stack(pixels) if pixels else np.zeros((0, *pre.image_size_, pre.channels_), np.uint8)
    with lock if lock is not None else contextlib.nullcontext():
        prediction = bundle.infer(batch)
    frame = prediction.to_frame()
    frame.insert(0, FILE_COLUMN, names)
    return frame


def score_images(bundle: ModelBundle, items: Iterable[tuple[str, Any]], *, batch_size: int = 256,
                 on_error: str = "fail", progress: Any = None, lock: AbstractContextManager[Any] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score image files through ``bundle.infer``, ``batch_size`` at a time, into one frame (:func:`iter_scores`).

    Returns:
        The predictions (``file``, ``prediction``, ``proba_<label>``...) and the failures
        (``file``, ``error``).

    Raises:
        SchemaError: With ``on_error="fail"``, naming the first unusable file.
    """
    parts = [_scored(bundle, [], [])]
    failed: list[dict[str, str]] = []
    for scored, failures in iter_scores(bundle, items, batch_size=batch_size, on_error=on_error, progress=progress,
                                        lock=lock):
        parts.append(scored)
        failed.extend(failures)
    return pd.concat(parts, ignore_index=True), pd.DataFrame(failed, columns=[FILE_COLUMN, "error"])


def predict_images(model: str | os.PathLike[str] | ModelBundle | None, src: str | os.PathLike[str],
                   dst: str | os.PathLike[str], *, batch_size: int = 256, on_error: str = "fail",
                   errors: str | os.PathLike[str] | None = None, progress: bool = True) -> BatchSummary:
    """Score a folder of images (or a ZIP of them) offline to a CSV: ``file``, ``prediction``, probabilities.

    Args:
        model: A store tag (``None``: the latest promoted model), a bundle directory or a bundle.
        src: A folder (every non-hidden file under it, recursively) or a ``.zip``.
        dst: The output CSV (written when the run completes).
        batch_size: Images per ``infer`` call.
        on_error: ``fail`` stops at the first unusable file (named); ``skip`` writes it with the reason to
            ``errors`` and scores the rest.
        errors: The errors CSV (default ``<dst stem>.errors.csv``), written only if a file failed.
        progress: Show a progress bar (one step per file).

    Returns:
        Files read, scored and failed, and where they went.
    """
    from kit.package._scoring import check_on_error, resolve_model

    check_on_error(on_error)
    bundle, tag = resolve_model(model)
    return score_to_csv(bundle, tag, src, dst, batch_size=batch_size, on_error=on_error, errors=errors,
                        progress=progress)


def score_to_csv(bundle: ModelBundle, tag: str, src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                 batch_size: int = 256, on_error: str = "fail", errors: str | os.PathLike[str] | None = None,
                 progress: bool = True) -> BatchSummary:
    """:func:`predict_images` with the model resolved (``kit predict`` on an image bundle lands here)."""
    from tqdm.auto import tqdm

    from kit.package._batch import _Writer, errors_path
    from kit.package._scoring import BatchSummary

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, but got {batch_size=}", field="batch_size")
    started = time.perf_counter()
    source = Path(src)
    items: FolderImages | ZipImages
    if source.is_dir():
        items = FolderImages(source)
    elif source.is_file():
        items = ZipImages(source)
    else:
        raise DataError(f"no such folder or ZIP: {source}", file=str(source))
    out = _Writer(Path(dst), "csv")
    bad = Path(errors) if errors is not None else errors_path(dst)
    bad_out = _Writer(bad, "csv")
    scored = failed = 0
    try:
        with tqdm(total=len(items), desc=f"predict {source.name}", unit="image", disable=not progress) as bar:
            for frame, failures in iter_scores(bundle, items, batch_size=batch_size, on_error=on_error,
                                               progress=bar):
                if len(frame) or not scored:  # the header is written even when no file is usable
                    out.write(frame.assign(model_tag=tag))
                if failures:
                    bad_out.write(pd.DataFrame(failures, columns=[FILE_COLUMN, "error"]))
                scored += len(frame)
                failed += len(failures)
        if not scored and not failed:
            out.write(_scored(bundle, [], []).assign(model_tag=tag))
        out.close()
        bad_out.close(remove_stale=True)
    finally:
        out.abort()
        bad_out.abort()
    return BatchSummary(rows=scored + failed, scored=scored, failed=failed, output=str(out.path),
                        errors=str(bad) if failed else None, tag=tag, engine="local", parts=1,
                        skipped_parts=0, seconds=time.perf_counter() - started)
