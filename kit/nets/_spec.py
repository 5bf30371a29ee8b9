"""The network spec a bundle stores, and building a network from it, with every contract check.

Checks, each a :class:`~kit.errors.BuilderError` naming the builder (and the parameter where one
is at fault), all before training starts:

* the reference resolves (a registered name or an importable ``module:function``);
* every parameter is one the builder takes, every parameter without a default is given, and
  every value survives a JSON round trip (the bundle stores them as JSON);
* the builder returns a ``torch.nn.Module`` whose output for a ``(batch, n_in)`` float32 batch
  (images: ``(batch, channels, height, width)``) has shape ``(batch, n_out)``;
* a builder that declares the inputs it takes (``build.inputs = ("image",)``; the table zoo takes
  tables) is not given another kind.

Rebuilding from a stored spec (the torch runtime) also compares the builder's source sha256 with
the recorded one and refuses a change unless ``allow_changed_code=True``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import BuilderError, CodeChangedError, KitError, require
from kit.nets._registry import BUILTINS, Builder, resolve
from kit.nets._source import Source, builder_source

if TYPE_CHECKING:
    from torch import nn

    from kit.config import TrainConfig

FORMAT = "kit.net/1"
SOURCE_ARTIFACT = "network_source.txt"
"""Bundle file holding the builder's source text (a record for people and the model card; never executed)."""


@dataclass(frozen=True)
class NetSpec:
    """What a bundle records about its network (the ``spec`` of ``bundle.json``).

    Attributes:
        builder: The builder reference as given (``"mlp"``, a registered name or ``"module:function"``).
        target: Where the builder function lives (``"module:qualname"``).
        params: The parameters it was called with (JSON values).
        n_in: Input width: the preprocessor's output columns (images: channels x height x width).
        n_out: Outputs: classes, or 1 for regression.
        source_sha256: sha256 of the builder's source (``None`` for bundles older than the record).
        source_kind: ``module`` or ``function`` (see :mod:`kit.nets._source`).
        defaults: The builder's JSON-able defaults for parameters not given (for the record).
        input: The input kind; ``table`` means ``(batch, n_in)`` float32, ``image`` means
            ``(batch, *input_shape)`` float32.
        input_shape: Images: ``(channels, height, width)``, what the builder was called with.
    """

    builder: str
    target: str
    params: dict[str, Any]
    n_in: int
    n_out: int
    source_sha256: str | None = None
    source_kind: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    input: str = "table"
    input_shape: tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """One row's input shape: ``(n_in,)`` for tables, ``(channels, height, width)`` for images."""
        return tuple(self.input_shape) if self.input_shape else (self.n_in,)

    @property
    def first_arg(self) -> int | tuple[int, ...]:
        """What the builder is called with first: ``n_in`` for tables, the input shape for images."""
        return tuple(self.input_shape) if self.input_shape else self.n_in

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the bundle manifest."""
        return {"format": FORMAT, "name": self.builder, "builder": self.builder, "target": self.target,
                "params": self.params, "defaults": self.defaults, "n_in": self.n_in, "n_out": self.n_out,
                "input": self.input, **({"input_shape": list(self.input_shape)} if self.input_shape else {}),
                "source": {"sha256": self.source_sha256, "kind": self.source_kind, "file": SOURCE_ARTIFACT}}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> NetSpec:
        """Read a stored spec, including the MLP specs of bundles older than builders."""
        if "builder" not in spec:  # kit.bundle/1 before builders: {"name": "mlp", hidden, dropout, ...}
            if spec.get("name") != "mlp":
                raise BuilderError(f"unknown network {spec.get('name')!r} in an old bundle spec", field="net")
            params = {k: spec[k] for k in ("hidden", "dropout", "activation", "norm") if k in spec}
            return cls("mlp", BUILTINS["mlp"], {**params, "skip": False}, int(spec["n_in"]), int(spec["n_out"]))
        source = spec.get("source") or {}
        return cls(str(spec["builder"]), str(spec.get("target", spec["builder"])), dict(spec.get("params", {})),
                   int(spec["n_in"]), int(spec["n_out"]), source.get("sha256"), source.get("kind"),
                   dict(spec.get("defaults", {})), str(spec.get("input", "table")),
                   tuple(int(v) for v in spec["input_shape"]) if spec.get("input_shape") else None)

    def describe(self) -> str:
        """One line: ``builder(param=value, ...)``."""
        shown = ", ".join(f"{k}={v!r}" for k, v in {**self.defaults, **self.params}.items())
        return f"{self.builder}({shown})"


def config_params(config: TrainConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """The builder parameters a TrainConfig gives, and the config field each came from.

    The MLP shorthand fields (``hidden``, ``dropout``, ``activation``, ``norm``) are parameters
    like any other when set (not ``None``); ``net_params`` holds the rest.
    """
    params = config.net_kwargs()
    origin = {name: f"net_params.{name}" if name in config.net_params else name for name in params}
    return params, origin


def check_params(builder: Builder, params: Mapping[str, Any], origin: Mapping[str, str] | None = None) -> None:
    """Refuse parameters the builder does not take, missing required ones and values JSON cannot hold.

    Raises:
        BuilderError: Naming the builder and the parameter.
    """
    origin = origin or {}
    accepted = builder.parameters()
    for name, value in params.items():
        where = origin.get(name, f"net_params.{name}")
        if name not in accepted and not builder.takes_any:
            listed = ", ".join(accepted) or "none"
            raise BuilderError(f"network {builder.ref!r} has no parameter {name!r} (given as {where}); its "
                               f"parameters: {listed}", field=where)
        try:
            same = json.loads(json.dumps(_plain(value))) == _plain(value)
        except (TypeError, ValueError):
            same = False
        if not same:
            raise BuilderError(f"parameter {name!r} of network {builder.ref!r} must be a JSON value (number, "
                               f"text, true/false, list or mapping), but got {value!r}", field=where)
    missing = [n for n, p in accepted.items() if p.default is p.empty and n not in params
               and p.kind is not p.VAR_POSITIONAL]
    if missing:
        raise BuilderError(f"network {builder.ref!r} needs parameter {missing[0]!r} (no default); pass it in "
                           "net_params", field=f"net_params.{missing[0]}")


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively (what JSON gives back)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def input_shape(n_in: int | Sequence[int]) -> tuple[int, ...]:
    """One row's shape from a builder's first argument: a width (tables) or ``(channels, height, width)``."""
    return (int(n_in),) if isinstance(n_in, int) else tuple(int(v) for v in n_in)


def call(builder: Builder, n_in: int | Sequence[int], n_out: int, params: Mapping[str, Any],
         origin: Mapping[str, str] | None = None) -> nn.Module:
    """Call the builder and check the contract on a probe batch (eval mode, no gradient).

    Args:
        builder: The resolved builder.
        n_in: The input width (tables), or ``(channels, height, width)`` (images).
        n_out: Outputs.
        params: The builder's parameters.
        origin: The config field each parameter came from (for error messages).

    Raises:
        BuilderError: If the builder does not take this kind of input, raises, returns something
            other than a module, or the module's output for a ``(2, *shape)`` float32 batch is not
            ``(2, n_out)``.
    """
    torch = require("torch", "train")
    shape = input_shape(n_in)
    kind = "table" if len(shape) == 1 else "image"
    takes = builder.inputs
    if takes is not None and kind not in takes:
        other = "cnn or an image builder build(input_shape, n_out, **params)" if kind == "image" else \
            "mlp, resmlp or ft_transformer"
        raise BuilderError(f"network {builder.ref!r} takes {' or '.join(takes)} input, not {kind}s; use {other}",
                           field="net")
    first: Any = shape[0] if kind == "table" else shape
    try:
        module = builder.fn(first, int(n_out), **params)
    except KitError as exc:  # the builder's own check: name the config field the parameter came from
        if exc.field is not None and exc.field in params:
            exc.field = (origin or {}).get(exc.field, f"net_params.{exc.field}")
        raise
    except Exception as exc:  # the user's code: report it with the builder's name and the parameters
        culprit = next((n for n in params if re.search(rf"\b{re.escape(n)}\b", str(exc))), None)
        raise BuilderError(f"network {builder.ref!r} failed to build with n_in={n_in}, n_out={n_out}, params "
                           f"{dict(params)}: {type(exc).__name__}: {exc}",
                           field=f"net_params.{culprit}" if culprit else "net_params") from None
    if not isinstance(module, torch.nn.Module):
        raise BuilderError(f"network {builder.ref!r} returned a {type(module).__name__}, not a torch.nn.Module",
                           field="net")
    was_training = module.training
    module.eval()
    probe = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as exc:
        raise BuilderError(f"the network built by {builder.ref!r} fails on a (batch, *shape) = {(2, *shape)} float32 "
                           f"batch: {type(exc).__name__}: {exc}", field="net") from None
    finally:
        module.train(was_training)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != (2, int(n_out)):
        raise BuilderError(f"the network built by {builder.ref!r} returns {got} for a {(2, *shape)} batch; the "
                           f"contract is (batch, n_out) = (2, {n_out}): one logit per class, or 1 value for "
                           "regression", field="net")
    result: nn.Module = module
    return result


def prepare(config: TrainConfig, n_in: int | Sequence[int], n_out: int) -> tuple[NetSpec, nn.Module, Source]:
    """Resolve ``config.net``, check its parameters, build it and record its source (before training).

    ``n_in`` is the input width of a table, or ``(channels, height, width)`` of an image.

    Returns:
        The spec to store, the freshly initialized module (train mode) and the builder's source.
    """
    builder = resolve(config.net)
    params, origin = config_params(config)
    check_params(builder, params, origin)
    params = {k: _plain(v) for k, v in params.items()}
    module = call(builder, n_in, n_out, params, origin)
    source = builder_source(builder.ref, builder.fn, module)
    defaults = {k: _plain(v) for k, v in builder.defaults().items() if k not in params and _jsonable(v)}
    shape = input_shape(n_in)
    spec = NetSpec(builder.ref, builder.target, params, int(np.prod(shape)), int(n_out), source.sha256, source.kind,
                   defaults, "table" if len(shape) == 1 else "image", shape if len(shape) > 1 else None)
    return spec, module, source


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def build(spec: NetSpec | Mapping[str, Any], *, allow_changed_code: bool = False) -> nn.Module:
    """Rebuild a stored network (fresh weights, eval mode); see :func:`rebuild`, which also says what changed."""
    return rebuild(spec, allow_changed_code=allow_changed_code)[0]


def rebuild(spec: NetSpec | Mapping[str, Any], *, allow_changed_code: bool = False
            ) -> tuple[nn.Module, dict[str, Any] | None]:
    """Rebuild a stored network (fresh weights) by importing its builder; stored code is never run.

    Args:
        spec: A :class:`NetSpec` or its dict.
        allow_changed_code: Build even if the builder's source sha256 differs from the recorded one.

    Returns:
        The module (eval mode) and, when the source changed and that was allowed, what changed
        (for the bundle's lineage); ``None`` otherwise.

    Raises:
        BuilderError: If the builder is missing or no longer fits its contract.
        CodeChangedError: If its source changed and ``allow_changed_code`` is false.
    """
    net = spec if isinstance(spec, NetSpec) else NetSpec.from_dict(spec)
    builder = resolve(net.builder)
    module = call(builder, net.first_arg, net.n_out, net.params)
    changed = None
    if net.source_sha256 is not None:
        current = builder_source(builder.ref, builder.fn, module)
        if current.sha256 != net.source_sha256:
            if not allow_changed_code:
                raise CodeChangedError(
                    f"the source of network builder {net.builder!r} ({current.origin}) changed since this model "
                    f"was trained (sha256 {current.sha256[:12]} != recorded {net.source_sha256[:12]}); restore it, "
                    "serve an ONNX runtime (kit quantize), which needs no code, or pass allow_changed_code=True to "
                    "load it anyway (recorded in the lineage)", field="net")
            changed = {"builder": net.builder, "recorded_sha256": net.source_sha256, "current_sha256": current.sha256,
                       "origin": current.origin, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    result: nn.Module = module.eval()
    return result, changed
