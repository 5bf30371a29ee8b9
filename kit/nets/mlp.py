"""The built-in ``mlp``: hidden blocks, a linear head and a linear shortcut from input to output.

Each hidden block is ``Linear -> [Norm] -> Activation -> [Dropout]``. A builder like any user's:
``build(n_in, n_out, **params) -> nn.Module``. Its defaults are kit's default recipe for tables
(see the README's quality table): hidden layers of 128 and 64, ReLU, dropout 0.3 and the linear
shortcut, trained with AdamW (lr 1e-3, weight decay 0.1) and label smoothing 0.05 by
:class:`~kit.config.TrainConfig`'s defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from kit.errors import BuilderError
from kit.nets import _layers as layers


def build(n_in: int, n_out: int, hidden: Sequence[int] = (128, 64), dropout: float = 0.3, activation: str = "relu",
          norm: str = "none", skip: bool = True) -> nn.Module:
    """An MLP for ``(batch, n_in)`` float32 inputs and ``(batch, n_out)`` outputs.

    Args:
        n_in: Input features.
        n_out: Outputs (classes, or 1 for regression).
        hidden: Hidden layer widths, e.g. ``[128, 64]``.
        dropout: Dropout after each hidden layer.
        activation: ``relu``, ``gelu``, ``silu`` or ``tanh``.
        norm: ``none``, ``batch`` or ``layer`` normalization after each hidden linear layer.
        skip: Add a linear shortcut from the input to the output. Without it the result is a plain
            ``nn.Sequential`` (the layout of bundles made before the shortcut existed).
    """
    if not isinstance(hidden, Sequence) or isinstance(hidden, str) or not hidden:
        raise BuilderError(f"hidden must be one or more positive widths, but got {hidden!r}", field="hidden")
    dropout = layers.check_dropout(dropout)
    blocks: list[nn.Module] = []
    width = n_in
    for h in hidden:
        blocks.append(nn.Linear(width, layers.check_width(h, "hidden")))
        normalization = layers.norm(norm, h)
        if normalization is not None:
            blocks.append(normalization)
        blocks.append(layers.activation(activation))
        if dropout > 0:
            blocks.append(nn.Dropout(dropout))
        width = h
    blocks.append(nn.Linear(width, n_out))
    deep = nn.Sequential(*blocks)
    return layers.Wide(deep, n_in, n_out) if skip else deep


build.search_space = {"depth": "int(1, 3)", "width": "int(16, 256, log)", "dropout": "float(0.0, 0.5)"}  # type: ignore[attr-defined]
"""The part of the default tuning space that is this network's (see :func:`kit.tune.default_space`)."""
