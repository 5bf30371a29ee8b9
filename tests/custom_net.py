"""A user's own network, outside kit: a residual MLP with batch norm, as a data scientist writes it.

Tests import it as ``custom_net:build`` (``tests/`` is on the test process's path). The servers
the tests start do not have ``tests/`` on their path, so there it is not importable: the ONNX
runtimes must serve without it.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm1d(width), nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetTab(nn.Module):
    def __init__(self, n_in: int, n_out: int, width: int, blocks: int, dropout: float) -> None:
        super().__init__()
        self.stem = nn.Linear(n_in, width)
        self.blocks = nn.Sequential(*[Block(width, dropout) for _ in range(blocks)])
        self.head = nn.Sequential(nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build(n_in: int, n_out: int, width: int = 64, blocks: int = 2, dropout: float = 0.1) -> nn.Module:
    """A residual MLP: stem, ``blocks`` residual blocks of ``width``, batch-normed head."""
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, but got {blocks}")
    return ResNetTab(n_in, n_out, width, blocks, dropout)


def build_wrong_shape(n_in: int, n_out: int) -> nn.Module:
    """Breaks the contract: one output too many."""
    return nn.Linear(n_in, n_out + 1)


def build_not_a_module(n_in: int, n_out: int) -> object:
    """Breaks the contract: not a torch module."""
    return {"n_in": n_in}
