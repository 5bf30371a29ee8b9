"""The built-in ``ft_transformer``: per-feature embeddings and a small transformer encoder.

After Gorishniy et al. 2021, "Revisiting Deep Learning Models for Tabular Data": every input
column ``j`` becomes a token ``x_j * W_j + b_j`` (categories arrive one-hot, so a category's token
is its own embedding), a learned [CLS] token is prepended, ``blocks`` pre-norm transformer blocks
(multi-head self-attention, then a ReGLU feed-forward) mix the tokens, and the head reads the
[CLS] token: ``LayerNorm -> ReLU -> Linear``. As in the paper, the first block has no norm before
its attention (the tokenizer's output goes straight in). Attention is written out with
``matmul`` and ``softmax`` so the network exports to a plain ONNX graph.

Defaults are smaller than the paper's (token size 32 instead of 192, one block instead of three) to
suit the small tables kit is usually given and a CPU: on diabetes (442 rows) a second block
overfits (test R² 0.28, 0.33 without the shortcut, instead of 0.43 on the split the quality floor
uses) and doubles the training time.
As kit's other networks, it adds a linear shortcut from the input to the output (``skip``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kit.errors import BuilderError
from kit.nets import _layers as layers


class Tokenizer(nn.Module):
    """``(batch, n_in)`` -> ``(batch, 1 + n_in, d)``: a [CLS] token, then one token per column."""

    def __init__(self, n_in: int, d: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d)
        self.weight = nn.Parameter(torch.empty(n_in, d).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_in, d).uniform_(-bound, bound))
        self.cls = nn.Parameter(torch.empty(1, 1, d).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        """Tokens for every row."""
        tokens = x.unsqueeze(-1) * self.weight + self.bias
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)


class Attention(nn.Module):
    """Multi-head self-attention, written out (exports to ONNX as MatMul + Softmax)."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Attend over the tokens of each row."""
        batch, tokens, d = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        mixed = (self.drop(weights) @ v).transpose(1, 2).reshape(batch, tokens, d)
        out: Tensor = self.out(mixed)
        return out


class ReGLU(nn.Module):
    """``a * relu(b)`` for the two halves of the last dimension."""

    def forward(self, x: Tensor) -> Tensor:
        """Gate one half with the other."""
        a, b = x.chunk(2, dim=-1)
        return a * torch.relu(b)


class Block(nn.Module):
    """Pre-norm transformer block: attention and a ReGLU feed-forward, each residual."""

    def __init__(self, d: int, heads: int, ffn_factor: float, attention_dropout: float, ffn_dropout: float,
                 residual_dropout: float, first: bool) -> None:
        super().__init__()
        hidden = max(1, round(d * ffn_factor))
        self.norm1: nn.Module = nn.Identity() if first else nn.LayerNorm(d)
        self.attention = Attention(d, heads, attention_dropout)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 2 * hidden), ReGLU(), nn.Dropout(ffn_dropout), nn.Linear(hidden, d))
        self.drop = nn.Dropout(residual_dropout)

    def forward(self, x: Tensor) -> Tensor:
        """The tokens after attention and feed-forward."""
        x = x + self.drop(self.attention(self.norm1(x)))
        out: Tensor = x + self.drop(self.ffn(self.norm2(x)))
        return out


class FTTransformer(nn.Module):
    """Tokenizer, transformer blocks, [CLS] head."""

    def __init__(self, n_in: int, n_out: int, d: int, blocks: int, heads: int, ffn_factor: float,
                 attention_dropout: float, ffn_dropout: float, residual_dropout: float) -> None:
        super().__init__()
        self.tokenizer = Tokenizer(n_in, d)
        self.blocks = nn.Sequential(*[Block(d, heads, ffn_factor, attention_dropout, ffn_dropout, residual_dropout,
                                            first=i == 0) for i in range(blocks)])
        self.head = nn.Sequential(nn.LayerNorm(d), nn.ReLU(), nn.Linear(d, n_out))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (or the regression value) from the [CLS] token."""
        out: Tensor = self.head(self.blocks(self.tokenizer(x))[:, 0])
        return out


def build(n_in: int, n_out: int, d_token: int = 32, blocks: int = 1, heads: int = 4, ffn_factor: float = 4 / 3,
          attention_dropout: float = 0.2, ffn_dropout: float = 0.1, residual_dropout: float = 0.0,
          skip: bool = True) -> nn.Module:
    """An FT-Transformer for ``(batch, n_in)`` float32 inputs and ``(batch, n_out)`` outputs.

    Args:
        n_in: Input features (each becomes a token).
        n_out: Outputs (classes, or 1 for regression).
        d_token: Token size; a multiple of ``heads``.
        blocks: Transformer blocks.
        heads: Attention heads.
        ffn_factor: Feed-forward hidden size as a multiple of ``d_token``.
        attention_dropout: Dropout on the attention weights.
        ffn_dropout: Dropout inside the feed-forward.
        residual_dropout: Dropout on each block's residual update.
        skip: Add a linear shortcut from the input to the output (as kit's mlp and resmlp).
    """
    layers.check_width(d_token, "d_token")
    layers.check_width(heads, "heads")
    layers.check_width(blocks, "blocks")
    if d_token % heads:
        raise BuilderError(f"d_token must be a multiple of heads, but got d_token={d_token}, heads={heads}",
                           field="d_token")
    if not isinstance(ffn_factor, int | float) or ffn_factor <= 0:
        raise BuilderError(f"ffn_factor must be positive, but got {ffn_factor!r}", field="ffn_factor")
    net = FTTransformer(n_in, n_out, d_token, blocks, heads, float(ffn_factor),
                        layers.check_dropout(attention_dropout, "attention_dropout"),
                        layers.check_dropout(ffn_dropout, "ffn_dropout"),
                        layers.check_dropout(residual_dropout, "residual_dropout"))
    return layers.Wide(net, n_in, n_out) if skip else net


build.search_space = {  # type: ignore[attr-defined]
    "net.d_token": "choice(16, 32, 64)", "net.blocks": "int(1, 3)", "net.attention_dropout": "float(0.0, 0.3)",
    "net.ffn_dropout": "float(0.0, 0.3)"}
"""The part of the default tuning space that is this network's (see :func:`kit.tune.default_space`)."""
