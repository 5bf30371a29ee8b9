"""The image preprocessor: decode, convert channels, resize by a recorded policy, normalize per channel.

Policies, stated once:

* decoding: Pillow, PNG and JPEG only (other parsers are not reached); an image with more than
  ``max_pixels`` pixels (:data:`MAX_PIXELS` by default: a decompression-bomb guard) is refused
  from its header, before any pixel is decoded; a truncated file is refused, never padded.
* channels: ``1`` is Pillow's ``L`` conversion (ITU-R 601-2 luma), ``3`` is ``RGB`` (an alpha
  channel is dropped, a grayscale image repeated).
* size: the training images' size (``image_size``). With ``resize="stretch"`` another size is
  resized bilinearly to it; with ``"pad"`` it is scaled to fit, keeping its aspect ratio, and
  centred on black; with ``"none"`` (the files were all one size and no ``image_size`` was asked
  for) another size is refused, naming the row.
* normalization: pixels scaled to [0, 1], then ``(x - mean) / std`` per channel with the mean and
  standard deviation of the training split's pixels (a constant channel gets std 1).

Input rows are records ``{"image": value}``, a DataFrame with an ``image`` column, or an array
``(n, height, width[, channels])`` of uint8 pixels. A value is a base64 string (a ``data:`` URL
prefix is allowed), the bytes of a PNG or JPEG file, a :class:`~pathlib.Path` to one, or a uint8
array ``(height, width[, channels])``. The network gets float32 ``(n, channels, height, width)``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kit.errors import DataError, NotFittedError, SchemaError
from kit.preprocess._decode import (
    FORMATS,
    GRAY_MODES,
    MAX_PIXELS,
    DecodedImage,
    ImageProblem,
    decode_image,
    decode_row,
    detect_channels,
    encode_png,
    open_image,
    to_bytes,
)
from kit.preprocess.tabular import Preprocessor

__all__ = ["FEATURE", "FORMATS", "GRAY_MODES", "IMAGE_FORMAT", "MAX_PIXELS", "DecodedImage", "ImagePreprocessor",
           "ImageProblem", "decode_image", "decode_row", "detect_channels", "encode_png", "open_image", "to_bytes"]

IMAGE_FORMAT = "kit.image-preprocessor/1"
FEATURE = "image"
"""The input field holding the image (the schema's one feature)."""
RESIZE_POLICIES = ("stretch", "pad", "none")
_CHUNK = 4096


class ImagePreprocessor(Preprocessor):
    """Turns images into the float32 ``(n, channels, height, width)`` batch a conv net sees.

    It keeps the tabular :class:`Preprocessor`'s contract (``fit``, ``transform``, ``schema``,
    ``example``, JSON state) with one feature, ``image``. Fitted attributes end in ``_``.

    Args:
        image_size: ``(height, width)`` to resize to, or ``None`` to keep the training images' size.
        channels: 1 or 3, or ``None`` to take it from the training pixels.
        resize: ``stretch`` or ``pad`` (used when ``image_size`` is given).
        max_pixels: Largest image accepted, in pixels (see :data:`MAX_PIXELS`).
    """

    def __init__(self, image_size: tuple[int, int] | None = None, channels: int | None = None,
                 resize: str = "stretch", max_pixels: int = MAX_PIXELS) -> None:
        super().__init__("error")
        if resize not in RESIZE_POLICIES:
            raise DataError(f"resize must be one of {RESIZE_POLICIES}, but got {resize=}", field="resize")
        if channels not in (None, 1, 3):
            raise DataError(f"channels must be 1 or 3, but got {channels=}", field="channels")
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.channels = channels
        self.resize = resize
        self.max_pixels = int(max_pixels)

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X: Any) -> ImagePreprocessor:
        """Take the size and channels, and fit the per-channel mean and std on training images.

        Args:
            X: Training images (see the module docstring); decoded uint8 arrays are fastest.

        Returns:
            self, fitted.
        """
        first = _first_value(X)
        if first is None:
            raise DataError("cannot fit an image preprocessor on zero images")
        self.channels_ = self.channels or detect_channels(first, self.max_pixels)
        if self.image_size is None:
            pixels, _ = decode_image(first, self.channels_, max_pixels=self.max_pixels)
            self.image_size_ = (int(pixels.shape[0]), int(pixels.shape[1]))
            self.resize_ = "none"
        else:
            self.image_size_, self.resize_ = self.image_size, self.resize
        self._one_feature()
        images = self.pixels(X)
        total = np.zeros(self.channels_)
        squares = np.zeros(self.channels_)
        for start in range(0, len(images), _CHUNK):
            chunk = images[start:start + _CHUNK].astype(np.float64) / 255.0
            total += chunk.sum(axis=(0, 1, 2))
            squares += (chunk * chunk).sum(axis=(0, 1, 2))
        count = len(images) * self.image_size_[0] * self.image_size_[1]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
        self.mean_ = [float(m) for m in mean]
        self.std_ = [float(s) if s > 1e-6 else 1.0 for s in std]
        return self

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return hasattr(self, "mean_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("this ImagePreprocessor is not fitted yet; call fit(train_images) first")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The network's input per row: ``(channels, height, width)``."""
        self._check_fitted()
        return (self.channels_, *self.image_size_)

    @property
    def network_input(self) -> tuple[int, int, int]:
        """What an image builder is called with first: ``(channels, height, width)``."""
        return self.input_shape

    @property
    def n_features_out(self) -> int:
        """Values per row the network sees (channels x height x width)."""
        c, h, w = self.input_shape
        return c * h * w

    # -- input ---------------------------------------------------------------------------------
    def values(self, X: Any) -> Sequence[Any] | np.ndarray:
        """The image value of every row, checking the record or column layout.

        Raises:
            SchemaError: A missing or unexpected field, or input of another type, named.
        """
        if isinstance(X, np.ndarray):
            if X.ndim not in (3, 4):
                raise SchemaError(f"expected images as an array (n, height, width[, channels]), but got shape "
                                  f"{X.shape}", field="shape")
            return X
        if isinstance(X, Mapping):
            X = [X]
        if isinstance(X, pd.DataFrame):
            self._check_names([str(c) for c in X.columns], row=None)
            return list(X[FEATURE].to_numpy())
        if isinstance(X, Sequence) and not isinstance(X, str | bytes):
            for i, record in enumerate(X):
                if not isinstance(record, Mapping):
                    raise SchemaError(f"row {i} is a {type(record).__name__}, expected an object "
                                      f'{{"{FEATURE}": "<base64 PNG or JPEG>"}}', row=i)
                if len(record) != 1 or FEATURE not in record:
                    self._check_names([str(k) for k in record], row=i)
            return [r[FEATURE] for r in X]
        raise SchemaError(f"cannot read images from a {type(X).__name__}; pass records "
                          f'[{{"{FEATURE}": ...}}], a DataFrame with an {FEATURE!r} column or a uint8 array',
                          field="rows")

    def pixels(self, X: Any, originals: list[tuple[int, int]] | None = None) -> np.ndarray:
        """Decode every row to uint8 ``(n, height, width, channels)`` at the fitted size.

        Args:
            X: Rows (see the module docstring).
            originals: When given, each row's own ``(height, width)`` is appended to it (drift).

        Raises:
            SchemaError: Naming the row of the first image that cannot be used, and why.
        """
        return self.decode_values(self.values(X), originals)

    def decode_values(self, values: Sequence[Any] | np.ndarray, originals: list[tuple[int, int]] | None = None,
                      first: int = 0) -> np.ndarray:
        """:meth:`pixels` of image values already taken out of their rows (:meth:`values`), e.g. a slice of them.

        Args:
            values: Image values (see the module docstring), or a uint8 array of images.
            originals: When given, each row's own ``(height, width)`` is appended to it (drift).
            first: The row number of ``values[0]`` in the caller's input, for error messages.

        Raises:
            SchemaError: Naming the row (``first`` + its position) of the first unusable image, and why.
        """
        h, w = self.image_size_
        c = self.channels_
        if isinstance(values, np.ndarray) and values.dtype == np.uint8:
            stacked = values.reshape(*values.shape[:3], c) if values.ndim == 3 and c == 1 else values
            if stacked.shape[1:] == (h, w, c):
                if originals is not None:
                    originals.extend([(h, w)] * len(stacked))
                return np.ascontiguousarray(stacked)
        else:  # decoded arrays of the right shape (a dataset's split) skip Pillow
            try:
                stacked = np.stack(list(values)) if len(values) else np.zeros((0, h, w, c), dtype=np.uint8)
            except (ValueError, TypeError):
                stacked = None
            if stacked is not None and stacked.dtype == np.uint8 and (
                    stacked.shape[1:] == (h, w, c) or (c == 1 and stacked.shape[1:] == (h, w))):
                if originals is not None:
                    originals.extend([(h, w)] * len(stacked))
                return stacked.reshape(len(stacked), h, w, c)
        out = np.empty((len(values), h, w, c), dtype=np.uint8)
        for i, value in enumerate(values):
            try:
                out[i], original = decode_image(value, c, (h, w), self.resize_, self.max_pixels)
            except ImageProblem as exc:
                row = first + i
                raise SchemaError(f"row {row}: the {FEATURE} {exc}", field=FEATURE, row=row) from None
            if originals is not None:
                originals.append(original)
        return out

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``(n, height, width, channels)`` to the network's normalized float32 ``(n, channels, h, w)``."""
        mean = np.asarray(self.mean_, dtype=np.float32)
        std = np.asarray(self.std_, dtype=np.float32)
        x = (pixels.astype(np.float32) / np.float32(255.0) - mean) / std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def transform(self, X: Any) -> np.ndarray:
        """Decode, convert, resize and normalize rows into float32 ``(n, channels, height, width)``.

        Raises:
            NotFittedError: Before :meth:`fit`.
            SchemaError: A missing or unexpected field, bad base64, a non-image, a truncated image,
                too many pixels, or another size when resizing is off, naming the row.
        """
        self._check_fitted()
        return self.normalize(self.pixels(X))

    # -- schema and persistence ----------------------------------------------------------------
    def schema(self) -> list[dict[str, Any]]:
        """The input contract: one ``image`` field, base64 PNG or JPEG, with the size it becomes."""
        self._check_fitted()
        return [{"name": FEATURE, "kind": "image", "type": "string", "format": "base64 PNG or JPEG",
                 "height": self.image_size_[0], "width": self.image_size_[1], "channels": self.channels_,
                 "resize": self.resize_, "max_pixels": self.max_pixels}]

    def example(self) -> dict[str, Any]:
        """One valid record: a PNG of the training mean colour, base64 encoded."""
        self._check_fitted()
        mean = np.round(np.asarray(self.mean_) * 255).astype(np.uint8)
        pixels = np.broadcast_to(mean, (*self.image_size_, self.channels_))
        return {FEATURE: base64.b64encode(encode_png(np.ascontiguousarray(pixels))).decode("ascii")}

    def to_dict(self) -> dict[str, Any]:
        """Fitted state as a JSON-able dict."""
        self._check_fitted()
        return {"format": IMAGE_FORMAT, "feature": FEATURE, "image_size": list(self.image_size_),
                "channels": self.channels_, "resize": self.resize_, "max_pixels": self.max_pixels,
                "mean": self.mean_, "std": self.std_,
                "requested": {"image_size": None if self.image_size is None else list(self.image_size),
                              "channels": self.channels, "resize": self.resize}}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> ImagePreprocessor:
        """Rebuild a fitted image preprocessor from :meth:`to_dict` output."""
        if state.get("format") != IMAGE_FORMAT:
            raise DataError(f"not a kit image preprocessor state (format {state.get('format')!r}, expected "
                            f"{IMAGE_FORMAT!r})", field="format")
        asked = state.get("requested", {})
        self = cls(asked.get("image_size"), asked.get("channels"), asked.get("resize", "stretch"),
                   int(state["max_pixels"]))
        self.image_size_ = (int(state["image_size"][0]), int(state["image_size"][1]))
        self.channels_ = int(state["channels"])
        self.resize_ = str(state["resize"])
        self.mean_ = [float(v) for v in state["mean"]]
        self.std_ = [float(v) for v in state["std"]]
        self._one_feature()
        return self

    def _one_feature(self) -> None:
        """The tabular preprocessor's fitted names, for code that reads them: one ``image`` feature, no statistics."""
        self.feature_names_in_ = [FEATURE]
        self.kinds_ = {FEATURE: "image"}
        self.constant_ = {}
        self.medians_, self.means_, self.scales_ = {}, {}, {}
        self.categories_, self.modes_ = {}, {}

    def decode_row(self, value: Any, row: int) -> DecodedImage:
        """Check and decode one request value for this model (the service does it before batching).

        Raises:
            SchemaError: Naming the row: bad base64, not a PNG/JPEG, truncated, too many pixels, or
                another size when resizing is off.
        """
        try:
            return decode_row(value, self.channels_, self.image_size_, self.resize_, self.max_pixels)
        except ImageProblem as exc:
            raise SchemaError(f"row {row}: the {FEATURE} {exc}", field=FEATURE, row=row) from None

    def to_json(self) -> str:
        """Fitted state as a JSON string (floats round-trip exactly)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    def __repr__(self) -> str:
        if not self.is_fitted:
            return f"ImagePreprocessor(image_size={self.image_size}, channels={self.channels}, fitted=False)"
        h, w = self.image_size_
        return f"ImagePreprocessor({h}x{w}x{self.channels_}, resize={self.resize_!r})"


def _first_value(X: Any) -> Any:
    if isinstance(X, np.ndarray):
        return X[0] if len(X) else None
    if isinstance(X, pd.DataFrame):
        return X[FEATURE].iloc[0] if FEATURE in X.columns and len(X) else None
    if isinstance(X, Mapping):
        return X.get(FEATURE)
    if isinstance(X, Sequence) and len(X) and isinstance(X[0], Mapping):
        return X[0].get(FEATURE)
    return None
