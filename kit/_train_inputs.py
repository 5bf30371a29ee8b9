"""What the training loop feeds the network: a float32 matrix (tables) or uint8 images normalized per batch.

Tables are small: the preprocessed split is one float32 tensor, as it always was. Images stay uint8
(one byte per pixel, a quarter of float32) and each batch is normalized when it is drawn, with the
preprocessor's own per-channel mean and std; optional light augmentation (``flip``, ``shift``) applies to
training batches only, drawn from the loop's seeded generator so a seed gives the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kit.errors import require
from kit.preprocess import ImagePreprocessor, Preprocessor

EVAL_CHUNK = 1024
"""Images per forward pass when the whole validation split is evaluated (bounded memory)."""


class Inputs:
    """The rows of one split as the network sees them.

    Args:
        x: The preprocessed float32 rows (tables).
        device: The torch device.
    """

    def __init__(self, x: np.ndarray, device: Any) -> None:
        torch = require("torch", "train")
        self.x = torch.as_tensor(x, dtype=torch.float32, device=device)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batch(self, idx: Any, generator: Any = None) -> Any:
        """The network's input for rows ``idx`` (training batches may be augmented)."""
        return self.x[idx]

    def outputs(self, model: Any) -> Any:
        """The network's outputs for every row (call under ``torch.no_grad``)."""
        return model(self.x)


class ImageInputs(Inputs):
    """uint8 images ``(n, channels, height, width)`` on the device, normalized one batch at a time.

    Args:
        pixels: uint8 ``(n, height, width, channels)`` from :meth:`ImagePreprocessor.pixels`.
        pre: The fitted image preprocessor (its mean and std).
        device: The torch device.
        augment: ``flip`` and/or ``shift`` for training batches.
    """

    def __init__(self, pixels: np.ndarray, pre: ImagePreprocessor, device: Any, augment: Sequence[str] = ()) -> None:
        torch = require("torch", "train")
        self.x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))).to(device)
        shape = (1, len(pre.mean_), 1, 1)
        self.mean = torch.tensor(pre.mean_, dtype=torch.float32, device=device).reshape(shape)
        self.std = torch.tensor(pre.std_, dtype=torch.float32, device=device).reshape(shape)
        self.augment = tuple(augment)

    def _normalize(self, pixels: Any) -> Any:
        return (pixels.float() / 255.0 - self.mean) / self.std

    def batch(self, idx: Any, generator: Any = None) -> Any:
        """Normalized images ``idx``; with a generator (training), augmented as configured."""
        x = self._normalize(self.x[idx])
        if generator is not None and self.augment:
            x = augment(x, self.augment, generator)
        return x

    def outputs(self, model: Any) -> Any:
        """Outputs for every image, :data:`EVAL_CHUNK` at a time."""
        torch = require("torch", "train")
        parts = [model(self._normalize(self.x[i:i + EVAL_CHUNK])) for i in range(0, len(self), EVAL_CHUNK)]
        return torch.cat(parts) if parts else model(self._normalize(self.x[:0]))


def augment(x: Any, kinds: Sequence[str], generator: Any) -> Any:
    """Light augmentation of a normalized batch ``(n, c, h, w)``.

    ``flip`` mirrors a random half of the images left-right; ``shift`` moves each image by up to
    1/8 of its height and width (at least one pixel), repeating the edge pixels.
    """
    torch = require("torch", "train")
    n, _, h, w = x.shape
    if "flip" in kinds:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    if "shift" in kinds:
        dy, dx = max(1, h // 8), max(1, w // 8)
        padded = torch.nn.functional.pad(x, (dx, dx, dy, dy), mode="replicate")
        oy = torch.randint(0, 2 * dy + 1, (n,), generator=generator).tolist()
        ox = torch.randint(0, 2 * dx + 1, (n,), generator=generator).tolist()
        x = torch.stack([padded[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(n)])
    return x


def inputs_for(pre: Preprocessor, X: Any, device: Any, augment: Sequence[str] = ()) -> Inputs:
    """The split's rows for the loop: images stay uint8 until a batch is drawn, tables are preprocessed now."""
    if isinstance(pre, ImagePreprocessor):
        return ImageInputs(pre.pixels(X), pre, device, augment)
    return Inputs(pre.transform(X), device)
