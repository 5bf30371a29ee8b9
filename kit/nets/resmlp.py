"""The built-in ``resmlp``: a residual MLP with normalization (the ResNet of Gorishniy et al. 2021).

``Linear(n_in, width)``, then ``blocks`` residual blocks
``x + Dropout(Linear(Dropout(Act(Linear(Norm(x))))))`` widening to ``width * expansion`` inside,
then ``Norm -> Act -> Linear(width, n_out)``, plus a linear shortcut from the input to the output.
"""

from __future__ import annotations

from torch import Tensor, nn

from kit.errors import BuilderError
from kit.nets import _layers as layers


class Block(nn.Module):
    """One pre-norm residual block."""

    def __init__(self, width: int, expansion: float, dropout: float, activation: str, norm: str) -> None:
        super().__init__()
        inner = max(1, round(width * expansion))
        normalization = layers.norm(norm, width)
        self.norm = normalization if normalization is not None else nn.Identity()
        self.up = nn.Linear(width, inner)
        self.act = layers.activation(activation)
        self.drop1 = nn.Dropout(dropout)
        self.down = nn.Linear(inner, width)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` plus the block's update."""
        out: Tensor = x + self.drop2(self.down(self.drop1(self.act(self.up(self.norm(x))))))
        return out


class ResMLP(nn.Module):
    """Input projection, residual blocks, normalized head."""

    def __init__(self, n_in: int, n_out: int, width: int, blocks: int, expansion: float, dropout: float,
                 activation: str, norm: str) -> None:
        super().__init__()
        self.first = nn.Linear(n_in, width)
        self.blocks = nn.Sequential(*[Block(width, expansion, dropout, activation, norm) for _ in range(blocks)])
        normalization = layers.norm(norm, width)
        self.norm = normalization if normalization is not None else nn.Identity()
        self.act = layers.activation(activation)
        self.head = nn.Linear(width, n_out)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (or the regression value)."""
        out: Tensor = self.head(self.act(self.norm(self.blocks(self.first(x)))))
        return out


def build(n_in: int, n_out: int, width: int = 128, blocks: int = 2, expansion: float = 2.0, dropout: float = 0.3,
          activation: str = "relu", norm: str = "batch", skip: bool = True) -> nn.Module:
    """A residual MLP for ``(batch, n_in)`` float32 inputs and ``(batch, n_out)`` outputs.

    Args:
        n_in: Input features.
        n_out: Outputs (classes, or 1 for regression).
        width: Width of the residual stream.
        blocks: Residual blocks.
        expansion: Inner width of a block, as a multiple of ``width``.
        dropout: Dropout inside each block.
        activation: ``relu``, ``gelu``, ``silu`` or ``tanh``.
        norm: ``batch``, ``layer`` or ``none`` (batch norm keeps DeepLIFT explanations exact).
        skip: Add a linear shortcut from the input to the output.
    """
    layers.check_width(width, "width")
    if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 0:
        raise BuilderError(f"blocks must be an integer >= 0, but got {blocks!r}", field="blocks")
    if not isinstance(expansion, int | float) or expansion <= 0:
        raise BuilderError(f"expansion must be positive, but got {expansion!r}", field="expansion")
    net = ResMLP(n_in, n_out, width, blocks, float(expansion), layers.check_dropout(dropout), activation, norm)
    return layers.Wide(net, n_in, n_out) if skip else net


build.search_space = {"net.width": "int(32, 256, log)", "net.blocks": "int(1, 4)", "dropout": "float(0.0, 0.5)"}  # type: ignore[attr-defined]
"""The part of the default tuning space that is this network's (see :func:`kit.tune.default_space`)."""
