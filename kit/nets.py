"""Network builders, looked up by name.

A network is described by a JSON-able spec (``{"name": "mlp", "n_in": ..., ...}``) that the
bundle stores beside the weights, so a checkpoint rebuilds itself (as nanoGPT's ``model_args``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kit.config import TrainConfig
from kit.errors import ConfigError, require

if TYPE_CHECKING:
    from torch import nn


def mlp_spec(n_in: int, n_out: int, config: TrainConfig) -> dict[str, Any]:
    """The spec of an MLP for ``n_in`` inputs and ``n_out`` outputs under ``config``."""
    return {
        "name": "mlp",
        "n_in": int(n_in),
        "n_out": int(n_out),
        "hidden": list(config.hidden),
        "dropout": config.dropout,
        "activation": config.activation,
        "norm": config.norm,
    }


def build_mlp(spec: dict[str, Any]) -> nn.Module:
    """Build ``Linear -> [Norm] -> Activation -> [Dropout]`` blocks and a linear head.

    Args:
        spec: A spec from :func:`mlp_spec`.

    Returns:
        An ``nn.Sequential`` that maps ``(batch, n_in)`` float32 to ``(batch, n_out)`` logits.
    """
    torch = require("torch", "train")
    nn_ = torch.nn
    acts: dict[str, Callable[[], nn.Module]] = {
        "relu": nn_.ReLU, "gelu": nn_.GELU, "silu": nn_.SiLU, "tanh": nn_.Tanh,
    }
    if spec["activation"] not in acts:
        raise ConfigError(f"unknown activation {spec['activation']!r}", field="activation")
    layers: list[nn.Module] = []
    width = spec["n_in"]
    for h in spec["hidden"]:
        layers.append(nn_.Linear(width, h))
        if spec["norm"] == "batch":
            layers.append(nn_.BatchNorm1d(h))
        elif spec["norm"] == "layer":
            layers.append(nn_.LayerNorm(h))
        layers.append(acts[spec["activation"]]())
        if spec["dropout"] > 0:
            layers.append(nn_.Dropout(spec["dropout"]))
        width = h
    layers.append(nn_.Linear(width, spec["n_out"]))
    module: nn.Module = nn_.Sequential(*layers)
    return module


BUILDERS: dict[str, Callable[[dict[str, Any]], Any]] = {"mlp": build_mlp}
SPECS: dict[str, Callable[[int, int, TrainConfig], dict[str, Any]]] = {"mlp": mlp_spec}


def make_spec(n_in: int, n_out: int, config: TrainConfig) -> dict[str, Any]:
    """The spec for the network named by ``config.net``."""
    if config.net not in SPECS:
        raise ConfigError(f"unknown network {config.net!r}; known: {', '.join(SPECS)}", field="net")
    return SPECS[config.net](n_in, n_out, config)


def build(spec: dict[str, Any]) -> nn.Module:
    """Build the network a spec describes.

    Raises:
        ConfigError: If the spec names an unknown network.
    """
    name = spec.get("name")
    if name not in BUILDERS:
        raise ConfigError(f"unknown network {name!r}; known: {', '.join(BUILDERS)}", field="net")
    module: nn.Module = BUILDERS[name](spec)
    return module
