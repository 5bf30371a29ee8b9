"""Builders by name or import path: the registry and reference resolution.

A builder reference is either a name in the registry (the zoo's ``mlp``, ``resmlp``,
``ft_transformer``, ``cnn``, or one given to :func:`register`) or an import path ``"package.module:function"``.
The zoo is registered here under import paths, exactly as a user's builder would be: the
built-ins go through the same resolution, parameter checks and source hashing.
"""

from __future__ import annotations

import importlib
import inspect
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kit.errors import BuilderError, ConfigError

BUILTINS: dict[str, str] = {
    "mlp": "kit.nets.mlp:build",
    "resmlp": "kit.nets.resmlp:build",
    "ft_transformer": "kit.nets.ft_transformer:build",
    "cnn": "kit.nets.cnn:build",
}
"""The zoo: built-in names and the import paths they stand for."""
DEFAULTS: dict[str, str] = {"table": "mlp", "image": "cnn"}
"""The network a wizard picks for each kind of data until the user picks another."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_REGISTRY: dict[str, Callable[..., Any] | str] = dict(BUILTINS)
_LOCK = threading.Lock()

BuilderFn = Callable[..., Any]


def register(name: str, builder: BuilderFn | str | None = None) -> Any:
    """Register a builder under a short name (also usable as a decorator).

    The registry lives in this process: a bundle trained with a registered builder records the
    name and where the function was defined, so another process must register it again before
    the torch runtime can rebuild the network (the ONNX runtimes need no builder at all).
    Registering a name again replaces the earlier builder (a notebook cell run twice).

    Args:
        name: Letters, digits, ``_``, ``.`` or ``-``; not a built-in name.
        builder: ``build(n_in, n_out, **params) -> torch.nn.Module``, or an import path
            ``"module:function"``; leave it out to use ``register(name)`` as a decorator.

    Returns:
        The builder (so ``@register("name")`` keeps the function usable).

    Raises:
        ConfigError: On a bad or built-in name, or a builder that is not callable.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"a builder name must be letters, digits, '_', '.' or '-' (no ':'), but got {name!r}",
                          field="net")
    if name in BUILTINS:
        raise ConfigError(f"{name!r} is a built-in network; register yours under another name", field="net")
    if builder is None:
        def decorate(fn: BuilderFn) -> BuilderFn:
            register(name, fn)
            return fn

        return decorate
    if not callable(builder) and not (isinstance(builder, str) and ":" in builder):
        raise ConfigError(f"builder for {name!r} must be a function or an import path 'module:function', but got "
                          f"{builder!r}", field="net")
    with _LOCK:
        _REGISTRY[name] = builder
    return builder


def unregister(name: str) -> None:
    """Forget a registered builder (built-ins stay)."""
    if name in BUILTINS:
        raise ConfigError(f"{name!r} is a built-in network and cannot be unregistered", field="net")
    with _LOCK:
        _REGISTRY.pop(name, None)


def names(kind: str | None = None) -> list[str]:
    """Every name a ``net`` may use: the built-ins first, then registered builders.

    Args:
        kind: ``"table"`` or ``"image"``: only the builders that take that input (see
            :attr:`Builder.inputs`; a builder that does not declare its inputs is listed for both, and
            so is a registered import path that cannot be imported now: picking it says why).
    """
    with _LOCK:
        every = [*BUILTINS, *sorted(n for n in _REGISTRY if n not in BUILTINS)]
    if kind is None:
        return every

    def takes(name: str) -> bool:
        try:
            inputs = resolve(name).inputs
        except BuilderError:
            return True
        return inputs is None or kind in inputs

    return [n for n in every if takes(n)]


@dataclass(frozen=True)
class Builder:
    """A resolved builder.

    Attributes:
        ref: The reference as given (``"mlp"``, ``"resnet_tab"`` or ``"my_nets:build"``).
        target: Where the function lives, ``"module:qualname"`` (``"__main__:build"`` for a notebook).
        fn: The function.
        registered: Whether ``ref`` is a registry name (a built-in or :func:`register`).
    """

    ref: str
    target: str
    fn: BuilderFn
    registered: bool

    @property
    def builtin(self) -> bool:
        """Whether this is one of the zoo's networks."""
        return self.ref in BUILTINS

    @property
    def inputs(self) -> tuple[str, ...] | None:
        """The kinds of input it takes (``build.inputs``; the table zoo takes tables), ``None``: undeclared."""
        declared = getattr(self.fn, "inputs", ("table",) if self.builtin else None)
        return None if declared is None else tuple(declared)

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The builder's own parameters: everything after ``n_in`` and ``n_out`` (no ``**kwargs``)."""
        params = list(_signature(self).parameters.values())[2:]
        return {p.name: p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    @property
    def takes_any(self) -> bool:
        """Whether the builder accepts arbitrary keyword parameters (``**params``)."""
        return any(p.kind is p.VAR_KEYWORD for p in _signature(self).parameters.values())

    def defaults(self) -> dict[str, Any]:
        """Parameters with a default value, and that value."""
        return {n: p.default for n, p in self.parameters().items() if p.default is not p.empty}


def _signature(builder: Builder) -> inspect.Signature:
    try:
        sig = inspect.signature(builder.fn)
    except (TypeError, ValueError) as exc:
        raise BuilderError(f"cannot read the signature of builder {builder.ref!r}: {exc}", field="net") from None
    positional = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2:
        raise BuilderError(f"builder {builder.ref!r} must take (n_in, n_out, **params), but its signature is "
                           f"{builder.target}{sig}", field="net")
    return sig


def resolve(ref: str) -> Builder:
    """The builder a reference names, imported if it is an import path.

    Args:
        ref: A registered name or ``"module:function"`` (``"package.module:Class.method"`` works too).

    Raises:
        BuilderError: If the name is unknown, the module cannot be imported, or the attribute is
            missing or not callable (the message names the builder).
    """
    if not isinstance(ref, str) or not ref.strip():
        raise BuilderError(f"net must name a builder (a registered name or 'module:function'), but got {ref!r}",
                           field="net")
    with _LOCK:
        entry = _REGISTRY.get(ref)
    if entry is None and ":" not in ref:
        raise BuilderError(f"unknown network {ref!r}; known: {', '.join(names())}; or give an import path "
                           "'module:function', or register it with kit.nets.register(name, build)", field="net")
    path = entry if isinstance(entry, str) else (ref if entry is None else None)
    fn = _import(ref, path) if path is not None else entry
    assert callable(fn)
    target = path if path is not None else f"{fn.__module__}:{fn.__qualname__}"
    return Builder(ref=ref, target=target, fn=fn, registered=entry is not None)


def _import(ref: str, path: str) -> BuilderFn:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise BuilderError(f"builder {ref!r}: an import path must look like 'module:function', but got {path!r}",
                           field="net")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = f" (is {module_name.split('.')[0]}.py or its package on sys.path / PYTHONPATH?)"
        raise BuilderError(f"network builder {ref!r} cannot be imported: {exc}{hint if exc.name else ''}",
                           field="net") from None
    except Exception as exc:  # the user's module failed while importing: say how
        raise BuilderError(f"network builder {ref!r}: importing {module_name} failed with "
                           f"{type(exc).__name__}: {exc}", field="net") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BuilderError(f"network builder {ref!r}: module {module_name} has no attribute {attr!r}",
                               field="net")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BuilderError(f"network builder {ref!r} is a {type(obj).__name__}, not a function", field="net")
    fn: BuilderFn = obj
    return fn
