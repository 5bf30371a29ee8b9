"""The built-in ``cnn``: a small conv net for images, sized from the input shape.

An image builder takes the input shape instead of a width: ``build(input_shape, n_out, **params)``
with ``input_shape = (channels, height, width)``, and maps a float32 ``(batch, channels, height,
width)`` batch to ``(batch, n_out)`` logits. This one stacks blocks of
``Conv3x3 -> [BatchNorm] -> activation -> Conv3x3 -> [BatchNorm] -> activation -> MaxPool2x2``,
doubling the channels each block, then a global average pool, dropout and a small head. The
number of blocks follows the image: one per halving while the side stays at least 2 pixels, at most
three (8x8 digits get two blocks, 32x32 and larger three). Only layers that ONNX exports, static
int8 quantizes and DeepLIFT has rules for (Conv2d, BatchNorm2d, ReLU, MaxPool2d, average pool,
Linear).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from kit.errors import BuilderError
from kit.nets import _layers as layers

INPUTS = ("image",)
"""The kinds of input this builder takes (a table network would refuse images, and the other way round)."""


def blocks_for(height: int, width: int, most: int = 3) -> int:
    """Conv blocks for an image: one per 2x2 pooling while the smaller side stays >= 2, at most ``most``."""
    side, count = min(height, width), 0
    while side // 2 >= 2 and count < most:
        side //= 2
        count += 1
    return max(count, 1)


def build(input_shape: Sequence[int], n_out: int, width: int = 32, blocks: int | None = None, head: int = 128,
          dropout: float = 0.2, activation: str = "relu", norm: str = "batch") -> nn.Module:
    """A conv net for ``(batch, channels, height, width)`` float32 images and ``(batch, n_out)`` outputs.

    Args:
        input_shape: ``(channels, height, width)`` of one image.
        n_out: Outputs (classes).
        width: Channels of the first block (doubled in each next block).
        blocks: Conv blocks; ``None`` sizes it from the image (see :func:`blocks_for`).
        head: Width of the hidden layer of the head (0: a linear head).
        dropout: Dropout before the head.
        activation: ``relu``, ``gelu``, ``silu`` or ``tanh`` (DeepLIFT has rules for relu, silu and tanh).
        norm: ``batch`` (BatchNorm2d after each conv) or ``none``.
    """
    if isinstance(input_shape, int) or len(input_shape) != 3:
        raise BuilderError(f"network 'cnn' takes images: input_shape must be (channels, height, width), but got "
                           f"{input_shape!r} (a table? use mlp, resmlp or ft_transformer)", field="net")
    channels, height, side = (int(v) for v in input_shape)
    width = layers.check_width(width, "width")
    dropout = layers.check_dropout(dropout)
    if norm not in ("batch", "none"):
        raise BuilderError(f"norm must be 'batch' or 'none' for cnn, but got {norm!r}", field="norm")
    count = blocks_for(height, side) if blocks is None else layers.check_width(blocks, "blocks")
    if 2 ** count > min(height, side):
        raise BuilderError(f"blocks={count} halves a {height}x{side} image {count} times, below one pixel; use at "
                           f"most {blocks_for(height, side, most=99)}", field="blocks")
    parts: list[nn.Module] = []
    c_in = channels
    for i in range(count):
        c_out = width * 2 ** i
        for c in (c_in, c_out):
            parts.append(nn.Conv2d(c, c_out, kernel_size=3, padding=1, bias=norm == "none"))
            if norm == "batch":
                parts.append(nn.BatchNorm2d(c_out))
            parts.append(layers.activation(activation))
        parts.append(nn.MaxPool2d(2))
        c_in = c_out
    parts += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        parts.append(nn.Dropout(dropout))
    if head:
        parts += [nn.Linear(c_in, layers.check_width(head, "head")), layers.activation(activation)]
        c_in = head
    parts.append(nn.Linear(c_in, n_out))
    return nn.Sequential(*parts)


build.search_space = {"net.width": "int(8, 64, log)", "dropout": "float(0.0, 0.5)"}  # type: ignore[attr-defined]
"""The part of the default tuning space that is this network's (see :func:`kit.tune.default_space`)."""
build.inputs = INPUTS  # type: ignore[attr-defined]
