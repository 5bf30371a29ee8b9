"""Real image files for the image tests: scikit-learn's digits written as PNG files in class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kit.preprocess import encode_png


def digit_pixels() -> tuple[np.ndarray, list[str]]:
    """The 1,797 digits as uint8 8x8 pixels (0-255) and their labels "0".."9" (as ``digits_images``)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return pixels, [str(int(t)) for t in bunch.target]


def write_digits(root: Path, limit: int | None = None) -> Path:
    """Write the digits as ``root/<digit>/<index>.png`` (the ImageFolder layout) and return ``root``."""
    pixels, labels = digit_pixels()
    count = len(labels) if limit is None else limit
    for i in range(count):
        folder = root / labels[i]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:04d}.png").write_bytes(encode_png(pixels[i]))
    return root
