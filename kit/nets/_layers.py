"""Small layer factories the zoo shares: activations and normalizations by name."""

from __future__ import annotations

from torch import nn

from kit.errors import BuilderError

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
NORMS = ("none", "batch", "layer")


def activation(name: str) -> nn.Module:
    """A fresh activation layer called ``name``.

    Raises:
        BuilderError: On an unknown name (the field is ``activation``).
    """
    if name not in ACTIVATIONS:
        raise BuilderError(f"activation must be one of {tuple(ACTIVATIONS)}, but got {name!r}", field="activation")
    return ACTIVATIONS[name]()


def norm(name: str, width: int) -> nn.Module | None:
    """A normalization layer over ``width`` features (``None`` for ``"none"``).

    Raises:
        BuilderError: On an unknown name (the field is ``norm``).
    """
    if name not in NORMS:
        raise BuilderError(f"norm must be one of {NORMS}, but got {name!r}", field="norm")
    if name == "batch":
        return nn.BatchNorm1d(width)
    return nn.LayerNorm(width) if name == "layer" else None


def check_dropout(value: float, name: str = "dropout") -> float:
    """``value`` if it is a probability in [0, 1), else a BuilderError naming ``name``."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise BuilderError(f"{name} must be in [0, 1), but got {value!r}", field=name)
    return float(value)


def check_width(value: int, name: str) -> int:
    """``value`` if it is a positive integer, else a BuilderError naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BuilderError(f"{name} must be a positive integer, but got {value!r}", field=name)
    return value


class Wide(nn.Module):
    """A network plus a linear shortcut from its input to its output ("wide and deep").

    The shortcut lets the network start from, and keep, whatever a linear model explains, so on
    small, mostly linear tables it matches a logistic or ridge regression instead of overfitting.
    """

    def __init__(self, deep: nn.Module, n_in: int, n_out: int) -> None:
        super().__init__()
        self.deep = deep
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: object) -> object:
        """``deep(x) + linear(x)``."""
        return self.deep(x) + self.linear(x)  # type: ignore[operator]
