"""Decoding one image: PNG/JPEG only, the pixel limit read from the header, channel conversion, resizing.

The policies are stated in :mod:`kit.preprocess.image`; errors are :class:`ImageProblem` (what is wrong),
which the caller turns into a :class:`~kit.errors.DataError` naming the file or a
:class:`~kit.errors.SchemaError` naming the row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_PIXELS = 40_000_000
"""Most pixels (width x height) one image may have: about a 7,000 x 5,700 photo. Larger is refused unread."""
FORMATS = ("PNG", "JPEG")
"""The only Pillow parsers reached: other formats are refused as 'not a PNG or JPEG image'."""


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """An image decoded once, when a request was checked, for the model it was checked against.

    The service checks and decodes each row before it joins a batch (so a bad image is a 4xx naming
    its row, never a failed batch); the model then takes the pixels as they are. Another model (a
    canary with another size) decodes :attr:`data` again. As text (the prediction log) it is a
    fingerprint, not the picture.

    Attributes:
        pixels: uint8 ``(height, width, channels)`` at the checking model's size.
        original: The image's own ``(height, width)``.
        data: The file bytes as sent.
    """

    pixels: np.ndarray
    original: tuple[int, int]
    data: bytes

    def __str__(self) -> str:
        return f"image {self.original[0]}x{self.original[1]} sha256:{hashlib.sha256(self.data).hexdigest()[:16]}"


class ImageProblem(ValueError):
    """Why one image cannot be used; the caller names the file or the row."""


def _mode(channels: int) -> str:
    return "L" if channels == 1 else "RGB"


def open_image(data: bytes | Path, max_pixels: int = MAX_PIXELS) -> Any:
    """Open a PNG or JPEG lazily (the header only) and check its pixel count.

    Raises:
        ImageProblem: Not a PNG/JPEG, unreadable, or more than ``max_pixels`` pixels.
    """
    from PIL import Image, UnidentifiedImageError

    source: Any = str(data) if isinstance(data, Path) else io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source, formats=list(FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageProblem(f"has too many pixels ({exc})") from None
    except UnidentifiedImageError:
        raise ImageProblem("is not a PNG or JPEG image") from None
    except OSError as exc:
        raise ImageProblem(f"cannot be read: {exc}") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageProblem(f"has {width}x{height} = {width * height:,} pixels, more than the limit of "
                           f"{max_pixels:,}")
    if width < 1 or height < 1:
        raise ImageProblem(f"has no pixels ({width}x{height})")
    return img


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
"""Pillow modes that are grayscale: a folder of only these is loaded with one channel."""


def detect_channels(value: Any, max_pixels: int = MAX_PIXELS) -> int:
    """1 for a grayscale image or array, else 3.

    Raises:
        ImageProblem: If the value is not a usable image.
    """
    raw = to_bytes(value)
    if isinstance(raw, np.ndarray):
        return 1 if raw.ndim == 2 or raw.shape[-1] == 1 else 3
    return 1 if open_image(raw, max_pixels).mode in GRAY_MODES else 3


def _from_array(value: np.ndarray, max_pixels: int) -> Any:
    from PIL import Image

    if value.dtype != np.uint8:
        raise ImageProblem(f"is an array of {value.dtype}; pass uint8 pixels (0-255)")
    if value.ndim == 3 and value.shape[2] == 1:
        value = value[:, :, 0]
    if value.ndim not in (2, 3) or (value.ndim == 3 and value.shape[2] not in (3, 4)):
        raise ImageProblem(f"is an array of shape {value.shape}; expected (height, width) or (height, width, 1|3|4)")
    if value.shape[0] * value.shape[1] > max_pixels:
        raise ImageProblem(f"has {value.shape[0] * value.shape[1]:,} pixels, more than the limit of {max_pixels:,}")
    return Image.fromarray(np.ascontiguousarray(value))


def to_bytes(value: Any) -> bytes | Path | np.ndarray:
    """A row's image value as file bytes, a path or an array (base64 text decoded).

    Raises:
        ImageProblem: Text that is not base64, or a value of another type.
    """
    if isinstance(value, DecodedImage):
        return value.data
    if isinstance(value, np.ndarray | Path):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ImageProblem("is not valid base64 text") from None
    raise ImageProblem(f"has type {type(value).__name__}; send a base64 PNG or JPEG string")


def decode_image(value: Any, channels: int, size: tuple[int, int] | None = None, resize: str = "stretch",
                 max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode one image to uint8 ``(height, width, channels)`` pixels.

    Args:
        value: Base64 text, PNG/JPEG bytes, a path, a uint8 array, or a :class:`DecodedImage`.
        channels: 1 or 3.
        size: ``(height, width)`` to return, or ``None`` for the image's own size.
        resize: ``stretch``, ``pad`` or ``none`` (another size is refused).
        max_pixels: The pixel limit checked from the header.

    Returns:
        The pixels and the image's own ``(height, width)`` before resizing.

    Raises:
        ImageProblem: Saying what is wrong (the caller names the file or row).
    """
    from PIL import Image, ImageOps

    if isinstance(value, DecodedImage) and value.pixels.shape == (*(size or value.pixels.shape[:2]), channels):
        return value.pixels, value.original  # checked and decoded for this model already
    raw = to_bytes(value)
    if isinstance(raw, np.ndarray) and raw.dtype == np.uint8 and raw.ndim in (2, 3):
        shaped = raw.reshape(raw.shape[0], raw.shape[1], -1)
        if shaped.shape[2] == channels and (size is None or shaped.shape[:2] == tuple(size)):
            return shaped, (int(raw.shape[0]), int(raw.shape[1]))  # already what the model takes
    img = _from_array(raw, max_pixels) if isinstance(raw, np.ndarray) else open_image(raw, max_pixels)
    original = (img.size[1], img.size[0])
    if size is not None and original != tuple(size) and resize == "none":  # known from the header: not decoded
        raise ImageProblem(f"is {original[0]}x{original[1]} (height x width) but the model takes "
                           f"{size[0]}x{size[1]} images and was trained without resizing")
    try:
        img = img.convert(_mode(channels))  # decodes: a truncated file fails here
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageProblem(f"cannot be decoded ({exc})") from None
    if size is not None and original != tuple(size):
        target = (int(size[1]), int(size[0]))
        if resize == "pad":
            img = ImageOps.pad(img, target, method=Image.Resampling.BILINEAR, color=0)
        else:
            img = img.resize(target, Image.Resampling.BILINEAR)
    pixels = np.asarray(img, dtype=np.uint8)
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels), original


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of uint8 pixels ``(height, width)`` or ``(height, width, 1|3)``."""
    img = _from_array(np.asarray(pixels), max_pixels=2**62)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_row(value: Any, channels: int, size: tuple[int, int], resize: str, max_pixels: int = MAX_PIXELS
               ) -> DecodedImage:
    """Decode one request value for a model once (see :class:`DecodedImage`).

    Raises:
        ImageProblem: Saying what is wrong with it.
    """
    raw = to_bytes(value)
    if isinstance(raw, np.ndarray | Path):
        raise ImageProblem("must be a base64 PNG or JPEG string")
    pixels, original = decode_image(raw, channels, size, resize, max_pixels)
    return DecodedImage(pixels, original, raw)
