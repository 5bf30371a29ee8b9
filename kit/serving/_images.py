"""What serving an image model adds: rows decoded when checked, drift on image statistics, file uploads.

* ``/predict`` and ``/explain`` take ``{"rows": [{"image": "<base64 PNG or JPEG>"}]}`` (the field is
  the schema's). :class:`ImageRowChecker` decodes every row for the model while checking the request,
  so bad base64, a non-image, a truncated file, too many pixels (a decompression bomb) or another
  size when resizing is off is a 4xx naming the row, before the row joins a batch; the model then
  takes the decoded pixels (:class:`~kit.preprocess.DecodedImage`).
* decoding never runs on the event loop: :meth:`ImageRowChecker.check` hands a request's rows to
  the worker's decode pool (:func:`decode_pool`, ``KIT_DECODE_THREADS`` threads, 4 by default), one
  thread per request, so a request of large or many images keeps one thread busy while the loop
  reads, checks and answers the others (Pillow releases the GIL while it inflates and resizes).
* drift: the window keeps per-image statistics (each channel's mean and std, the image's own size;
  :func:`kit.drift.image_stats`), not pictures, and compares them with the training reference.
* ``/predict_file`` takes one image or a ZIP of images and answers a CSV: file, prediction, probabilities.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import SchemaError
from kit.serving._rows import RowChecker

if TYPE_CHECKING:
    from kit.bundle import ModelBundle


_POOL: dict[str, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def decode_pool(threads: int) -> ThreadPoolExecutor:
    """This process's image decode pool (created on first use with ``threads`` threads; one per worker)."""
    with _POOL_LOCK:
        if "pool" not in _POOL:
            _POOL["pool"] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kit-decode")
        return _POOL["pool"]


class ImageRowChecker(RowChecker):
    """The request checks of an image model: the envelope, one ``image`` field per row, decoded now.

    Args:
        bundle: The served image model.
        threads: Size of the decode pool (:func:`decode_pool`) that :meth:`check` uses.
    """

    def __init__(self, bundle: ModelBundle, threads: int = 4) -> None:
        super().__init__(bundle)
        self.pre: Any = bundle.preprocessor
        self.field = self.names[0]
        self.threads = threads

    def __call__(self, payload: Any, max_rows: int) -> list[dict[str, Any]]:
        """Check a parsed body in this thread; every row comes back as ``{"image": DecodedImage}``.

        Raises:
            BadRequestError: If the body is not an object with a ``rows`` list.
            SchemaError: Naming the row: not an object, a missing or unknown field, or an image the
                model cannot take (see the module docstring).
        """
        return self.decode(self.rows_of(payload, max_rows))

    async def check(self, payload: Any, max_rows: int) -> list[dict[str, Any]]:
        """:meth:`__call__` for the event loop: the envelope here, the images in the decode pool.

        Raises:
            BadRequestError: If the body is not an object with a ``rows`` list.
            SchemaError: Naming the row, as :meth:`__call__`.
        """
        rows = self.rows_of(payload, max_rows)
        if not rows:
            return []
        return await asyncio.get_running_loop().run_in_executor(decode_pool(self.threads), self.decode, rows)

    def decode(self, rows: list[Any]) -> list[dict[str, Any]]:
        """Check and decode each row of a request, in order (the first bad one raises, naming it)."""
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise SchemaError(f'row {i} is a {type(row).__name__}, expected an object {{"{self.field}": '
                                  '"<base64 PNG or JPEG>"}', row=i)
            if row.keys() != self.known:
                self._names(row, i)
            out.append({self.field: self.pre.decode_row(row[self.field], i)})
        return out


def row_checker(bundle: ModelBundle, threads: int = 4) -> RowChecker:
    """The request checks for a model: an :class:`ImageRowChecker` (its pool: ``threads``) or a :class:`RowChecker`."""
    return ImageRowChecker(bundle, threads) if bundle.kind == "image" else RowChecker(bundle)


def window_rows(bundle: ModelBundle, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the drift window keeps of some rows: the rows (tables) or per-image statistics (images)."""
    if bundle.kind != "image" or not rows:
        return rows
    from kit.drift import image_stats

    pre: Any = bundle.preprocessor
    originals: list[tuple[int, int]] = []
    pixels = pre.pixels(rows, originals)
    frame = image_stats(pixels, np.asarray(originals))
    return [dict(zip(frame.columns, values, strict=True)) for values in frame.itertuples(index=False)]


def predict_upload(bundle: ModelBundle, data: bytes, lock: threading.Lock | None = None) -> str:
    """CSV text of the predictions for an uploaded image or ZIP of images (``file``, ``prediction``, probabilities).

    Args:
        bundle: The served image model.
        data: The upload.
        lock: The model's lock, held only while a batch runs through the model (decoding the files
            does not keep ``/predict`` waiting).

    Raises:
        DataError: An unreadable ZIP or one over the limits.
        SchemaError: Naming the first file that is not a usable image.
    """
    from kit.package._image_batch import score_images, upload_items

    scored, _ = score_images(bundle, upload_items(data), on_error="fail", lock=lock)
    text: str = scored.to_csv(index=False)
    return text
