"""Which parts of a torch network shap's DeepLIFT has rules for.

shap's DeepExplainer attaches its rules to ``nn.Module`` layers (``op_handler``: Linear, ReLU,
BatchNorm, ...). Two things escape it: a layer type without a rule (``LayerNorm``), and a
non-linear operation called directly in a ``forward`` (``torch.softmax``, ``q @ k``, ``a * relu(b)``),
which its hooks never see, so the gradient there is not a DeepLIFT multiplier and the values stop
adding up. :func:`missing_rules` finds both, the second by tracing the network with ``torch.fx``
(a network fx cannot trace is judged by its layers and the additivity check alone).
"""

from __future__ import annotations

from typing import Any

LINEAR_OPS = frozenset({
    "add", "iadd", "sub", "isub", "neg", "pos", "getitem", "getattr", "cat", "concat", "stack", "reshape", "view",
    "flatten", "unflatten", "unsqueeze", "squeeze", "permute", "transpose", "t", "contiguous", "expand", "expand_as",
    "repeat", "chunk", "split", "size", "dim", "sum", "mean", "to", "float", "double", "type_as", "clone", "detach",
})
"""Operations that are linear in their data inputs: DeepLIFT's multipliers pass through them unchanged."""

SHAPE_OPS = frozenset({"getattr", "size", "dim"})
"""Operations that read a tensor's shape, not its values."""

PRODUCT_OPS = frozenset({"mul", "imul", "truediv", "itruediv", "matmul", "mm", "bmm", "einsum"})
"""Linear when at most one argument comes from the input (a scale by a weight), bilinear otherwise."""


def _name(target: Any) -> str:
    name = getattr(target, "__name__", str(target))
    return name.strip("_")


def functional_ops(module: Any) -> list[str]:
    """Non-linear operations called in ``forward`` outside ``nn`` layers (empty if fx cannot trace it)."""
    graph = _trace(module)
    if graph is None:
        return []
    data: set[Any] = set()  # nodes whose value depends on the input (shapes and sizes do not count)
    found: set[str] = set()
    for node in graph.nodes:
        inputs = [a for a in node.all_input_nodes if a in data]
        name = _name(node.target) if node.op in ("call_function", "call_method") else ""
        if node.op == "placeholder" or (inputs and name not in SHAPE_OPS and node.op != "get_attr"):
            data.add(node)
        if not name or not inputs or name in SHAPE_OPS:
            continue
        if name in LINEAR_OPS or (name in PRODUCT_OPS and len(inputs) < 2):
            continue
        found.add(name)
    return sorted(found)


def _trace(module: Any) -> Any:
    """The fx graph of ``module`` with ``torch.nn`` layers as leaves, or ``None`` if it cannot be traced."""
    import torch.fx

    try:
        return torch.fx.Tracer().trace(module)
    except Exception:  # data-dependent control flow and the like: the additivity check decides
        return None


def missing_rules(module: Any, handlers: Any) -> list[str]:
    """Layer types without a DeepLIFT rule in ``handlers``, then functional non-linear operations.

    Args:
        module: The torch network.
        handlers: shap's ``op_handler`` mapping (layer type name -> rule).
    """
    traced = _trace(module) is not None
    # Traced, a custom module's forward is read op by op; only torch.nn layers need a rule of their own.
    kinds = {type(m).__name__ for m in module.modules()
             if not list(m.children()) and (not traced or type(m).__module__.startswith("torch."))}
    layers = sorted(k for k in kinds if k not in handlers)
    return [*layers, *(f"{op} (called in forward)" for op in functional_ops(module))]
