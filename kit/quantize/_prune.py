"""Structured pruning: remove whole hidden units of a Linear chain by importance, keep a real smaller network.

Zeroed weights give no speed on a CPU; removing units does. A network can be pruned when it is a
chain of ``Linear`` layers with only element-wise layers between them (activations, dropout, batch or
layer norm, identity), optionally beside a linear input-to-output shortcut (:class:`~kit.nets._layers.Wide`,
the built-in ``mlp``), and its builder takes a ``hidden`` list of widths that rebuilds the pruned shape:
the pruned network is the same builder with smaller ``hidden`` (a new spec and weights, exported to ONNX
like any other). Anything else (residual blocks, attention, convolutions) is skipped with the reason.

A unit's importance is its mean absolute activation on the training rows times the norm of the weights
that read it in the next layer. Each step of the schedule keeps the most important
``ceil(width * (1 - sparsity))`` units of every hidden layer of the previous step's network and
fine-tunes it on the teacher's soft outputs and the labels (:func:`~kit.quantize._fit.fit`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import BuilderError, require
from kit.quantize._fit import Rows, derive, fit

if TYPE_CHECKING:
    from torch import nn

    from kit.bundle import ModelBundle
    from kit.nets import NetSpec, Source

ELEMENTWISE = ("ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "LeakyReLU", "ELU", "Dropout", "Identity", "BatchNorm1d",
               "LayerNorm")
"""Layers that may sit between two Linear layers of a prunable chain (they act on each unit alone or per row)."""


@dataclass
class Chain:
    """The Linear layers of a prunable network, by state-dict prefix, and the per-unit layers after each.

    Attributes:
        linears: State-dict prefixes of the chain's Linear layers, input to output.
        between: For each hidden layer (all but the last Linear), the prefixes of its norm layers.
    """

    linears: list[str]
    between: list[list[str]]

    def hidden(self, weights: dict[str, np.ndarray]) -> list[int]:
        """The hidden widths of the chain in these weights."""
        return [int(weights[f"{name}.weight"].shape[0]) for name in self.linears[:-1]]


def chain_of(module: nn.Module) -> Chain:
    """The prunable chain of ``module``.

    Raises:
        BuilderError: Naming why it cannot be pruned safely.
    """
    torch = require("torch", "train")
    nn = torch.nn
    prefix, body = "", module
    if type(module).__name__ == "Wide" and isinstance(getattr(module, "deep", None), nn.Sequential):
        prefix, body = "deep.", module.get_submodule("deep")
    if not isinstance(body, nn.Sequential):
        raise BuilderError(f"a {type(module).__name__} is not a chain of Linear layers (nn.Sequential, optionally "
                           "beside a linear shortcut): pruning skipped", field="net")
    linears: list[str] = []
    between: list[list[str]] = []
    for name, layer in body.named_children():
        kind = type(layer).__name__
        if isinstance(layer, nn.Linear):
            linears.append(prefix + name)
            between.append([])
        elif kind in ELEMENTWISE and linears:
            if kind in ("BatchNorm1d", "LayerNorm"):
                between[-1].append(prefix + name)
        else:
            raise BuilderError(f"layer {prefix + name} ({kind}) is not a Linear or a per-unit layer between Linear "
                               "layers: pruning skipped", field="net")
    if len(linears) < 2:
        raise BuilderError("the network has no hidden Linear layer to prune", field="net")
    return Chain(linears, between[:-1])


def importance(module: nn.Module, chain: Chain, x: np.ndarray) -> list[np.ndarray]:
    """Per hidden layer, each unit's mean |activation| on rows ``x`` times the norm of its outgoing weights."""
    torch = require("torch", "train")
    layers = dict(module.named_modules())
    seen: dict[str, np.ndarray] = {}
    hooks = []
    for name in chain.linears[1:]:
        def hook(_: Any, args: tuple[Any, ...], name: str = name) -> None:
            seen[name] = args[0].abs().mean(0).numpy()
        hooks.append(layers[name].register_forward_pre_hook(hook))
    try:
        module.eval()
        with torch.inference_mode():
            module(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    return [seen[name] * np.linalg.norm(layers[name].weight.detach().numpy(), axis=0) for name in chain.linears[1:]]


def slice_weights(weights: dict[str, np.ndarray], chain: Chain, keep: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The weights with only the ``keep`` units of every hidden layer (the other entries unchanged)."""
    out = {k: v.copy() for k, v in weights.items()}
    for i, units in enumerate(keep):
        units = np.sort(units)
        first, second = chain.linears[i], chain.linears[i + 1]
        out[f"{first}.weight"] = out[f"{first}.weight"][units]  # its columns may be cut already
        if f"{first}.bias" in weights:
            out[f"{first}.bias"] = weights[f"{first}.bias"][units]
        for norm in chain.between[i]:
            for field in ("weight", "bias", "running_mean", "running_var"):
                if f"{norm}.{field}" in weights:
                    out[f"{norm}.{field}"] = weights[f"{norm}.{field}"][units]
        out[f"{second}.weight"] = out[f"{second}.weight"][:, units]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def prune_step(bundle: ModelBundle, sparsity: float, widths: list[int], rows: Rows
               ) -> tuple[NetSpec, Source, nn.Module, dict[str, Any]]:
    """``bundle``'s network with every hidden layer cut to ``ceil(width * (1 - sparsity))`` of ``widths`` units.

    Returns:
        The pruned network's spec, its builder's source, the module (not fine-tuned) and the lineage step.

    Raises:
        BuilderError: If the network is not a prunable chain or its builder cannot rebuild the pruned shape.
    """
    from kit import nets
    from kit.config import TrainConfig

    torch = require("torch", "train")
    module = bundle.module()
    chain = chain_of(module)
    net = bundle.net
    accepted = nets.resolve(net.builder).parameters()
    if "hidden" not in accepted:
        raise BuilderError(f"network {net.builder!r} has no 'hidden' parameter to rebuild a pruned chain with: "
                           "pruning skipped", field="net")
    target = [max(1, math.ceil(w * (1 - sparsity))) for w in widths]
    scores = importance(module, chain, rows.x_train)
    keep = [np.argsort(-s, kind="stable")[:min(t, len(s))] for s, t in zip(scores, target, strict=True)]
    weights = slice_weights(bundle.weights, chain, keep)
    params = {**net.params, "hidden": [len(k) for k in keep]}
    spec, smaller, source = nets.prepare(TrainConfig(net=net.builder, net_params=params), net.n_in, net.n_out)
    try:
        smaller.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    except RuntimeError as exc:
        raise BuilderError(f"network {net.builder!r} with hidden={params['hidden']} does not take the pruned "
                           f"weights ({' '.join(str(exc).split())[:300]}): pruning skipped", field="net") from None
    step = {"step": "prune", "sparsity": sparsity, "hidden": params["hidden"], "from_hidden": chain.hidden(
        bundle.weights)}
    return spec, source, smaller, step


def prune(bundle: ModelBundle, rows: Rows, sparsities: tuple[float, ...], *, epochs: int, temperature: float,
          alpha: float, seed: int = 0, should_stop: Callable[[], bool] = lambda: False,
          progress: Callable[[str], None] = lambda _: None) -> tuple[list[ModelBundle], str | None]:
    """Prune ``bundle``'s network step by step over ``sparsities``, fine-tuning after each step.

    Returns:
        One bundle per finished step (each pruned further than the one before; its lineage lists
        every step), and why pruning was skipped or stopped early (``None`` when it ran through).
    """
    try:
        widths = chain_of(bundle.module()).hidden(bundle.weights)
    except BuilderError as exc:
        return [], exc.message
    out: list[ModelBundle] = []
    current = bundle
    for sparsity in sparsities:
        if should_stop():
            return out, f"stopped before sparsity {sparsity}"
        progress(f"prune {sparsity:.0%} of hidden units")
        try:
            spec, source, module, step = prune_step(current, sparsity, widths, rows)
        except BuilderError as exc:
            return out, exc.message
        tuned = fit(module, rows, epochs=epochs, temperature=temperature, alpha=alpha, seed=seed, lr=1e-3,
                    should_stop=should_stop)  # a gentler rate than training from scratch: keep what survived
        current = derive(current, spec, module, source, {**step, "finetune": tuned})
        out.append(current)
    return out, None
