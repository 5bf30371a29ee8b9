"""What serving an image model adds: rows decoded when checked, drift on image statistics, file uploads.

* ``/predict`` and ``/explain`` take ``{"rows": [{"image": "<base64 PNG or JPEG>"}]}`` (the field is
  the schema's). :class:`ImageRowChecker` decodes every row for the model while checking the request,
  so bad base64, a non-image, a truncated file, too many pixels (a decompression bomb) or another
  size when resizing is off is a 4xx naming the row, before the row joins a batch; the model then
  takes the decoded pixels (:class:`~kit.preprocess.DecodedImage`).
* drift: the window keeps per-image statistics (each channel's mean and std, the image's own size;
  :func:`kit.drift.image_stats`), not pictures, and compares them with the training reference.
* ``/predict_file`` takes one image or a ZIP of images and answers a CSV: file, prediction, probabilities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import SchemaError
from kit.serving._rows import RowChecker

if TYPE_CHECKING:
    from kit.bundle import ModelBundle


class ImageRowChecker(RowChecker):
    """The request checks of an image model: the envelope, one ``image`` field per row, decoded now.

    Args:
        bundle: The served image model.
    """

    def __init__(self, bundle: ModelBundle) -> None:
        super().__init__(bundle)
        self.pre: Any = bundle.preprocessor
        self.field = self.names[0]

    def __call__(self, payload: Any, max_rows: int) -> list[dict[str, Any]]:
        """Check a parsed body; every row comes back as ``{"image": DecodedImage}``.

        Raises:
            BadRequestError: If the body is not an object with a ``rows`` list.
            SchemaError: Naming the row: not an object, a missing or unknown field, or an image the
                model cannot take (see the module docstring).
        """
        rows = self.rows_of(payload, max_rows)
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise SchemaError(f'row {i} is a {type(row).__name__}, expected an object {{"{self.field}": '
                                  '"<base64 PNG or JPEG>"}', row=i)
            if row.keys() != self.known:
                self._names(row, i)
            out.append({self.field: self.pre.decode_row(row[self.field], i)})
        return out


def row_checker(bundle: ModelBundle) -> RowChecker:
    """The request checks for a model: :class:`ImageRowChecker` for an image model, else :class:`RowChecker`."""
    return ImageRowChecker(bundle) if bundle.kind == "image" else RowChecker(bundle)


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


def predict_upload(bundle: ModelBundle, data: bytes) -> str:
    """CSV text of the predictions for an uploaded image or ZIP of images (``file``, ``prediction``, probabilities).

    Raises:
        DataError: An unreadable ZIP or one over the limits.
        SchemaError: Naming the first file that is not a usable image.
    """
    from kit.package._image_batch import score_images, upload_items

    scored, _ = score_images(bundle, upload_items(data), on_error="fail")
    text: str = scored.to_csv(index=False)
    return text
