"""Search spaces for :mod:`kit.tune`: a small declared syntax, validated before any trial runs.

A space maps a parameter name to a spec. Names are :class:`~kit.config.TrainConfig` fields,
``net.<param>`` for a parameter of the network's builder (``net.width``, ``net.blocks``), and
``depth`` and ``width`` for builders that take ``hidden`` (``hidden = (width,) * depth``). Specs::

    "float(1e-4, 3e-2, log)"     a float, uniform or (with ``log``) log-uniform in [low, high]
    "int(16, 256, log)"          an integer in [low, high], optionally log-scaled
    "choice(32, 64, 128)"        one of the listed values (numbers, true/false or bare words)
    [32, 64, 128]                the same choice, as a list
    0.1                          a fixed value (not searched)

Every bound and choice is checked against ``TrainConfig`` and the builder's signature up front,
and :meth:`Space.check_network` builds the network at every bound once the input width is known,
so a bad spec fails with a :class:`~kit.errors.ConfigError` naming the parameter instead of a
failed trial later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from kit.config import MLP_FIELDS, TrainConfig
from kit.errors import ConfigError, KitError

if TYPE_CHECKING:
    import optuna

TRAINING_SPACE: dict[str, Any] = {
    "lr": "float(1e-4, 3e-2, log)",
    "weight_decay": "float(1e-4, 1.0, log)",
    "batch_size": "choice(32, 64, 128, 256)",
    "label_smoothing": "float(0.0, 0.2)",
}
"""What every network's default space searches: the optimizer and the loss."""

DEFAULT_SPACE: dict[str, Any] = {"depth": "int(1, 3)", "width": "int(16, 256, log)", "dropout": "float(0.0, 0.5)",
                                 **TRAINING_SPACE}
"""The default space of ``mlp``: depth, width, dropout, log-uniform lr and weight decay, batch size, label smoothing."""

NOT_SEARCHABLE = ("net", "net_params", "hidden", "monitor", "seed", "device", "extra")
"""Config fields a space may not set (the study fixes them; ``depth``/``width`` and ``net.*`` cover the network)."""

NET_PREFIX = "net."
"""Space keys ``net.<param>`` search the builder's parameter ``<param>``."""


def default_space(net: str = "mlp") -> dict[str, Any]:
    """The default space for network ``net``: its builder's ``search_space`` plus :data:`TRAINING_SPACE`.

    A builder declares its own part as a function attribute, e.g.
    ``build.search_space = {"net.width": "int(32, 256, log)", "net.blocks": "int(1, 4)"}`` (the zoo
    does); without one, ``dropout`` is searched when the builder takes it.
    """
    from kit.nets import resolve

    builder = resolve(net)
    own = getattr(builder.fn, "search_space", None)
    if own is None:
        own = {"dropout": "float(0.0, 0.5)"} if "dropout" in builder.parameters() else {}
    return {**dict(own), **TRAINING_SPACE}


_SPEC = re.compile(r"^\s*(float|int|choice)\s*\((.*)\)\s*$", re.IGNORECASE | re.DOTALL)


def _atom(text: str) -> Any:
    """Parse one literal of a spec: int, float, bool or a bare word."""
    text = text.strip().strip("'\"")
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Param:
    """One searched (or fixed) parameter.

    Attributes:
        name: The parameter name (a TrainConfig field, ``depth`` or ``width``).
        kind: ``float``, ``int``, ``choice`` or ``fixed``.
        low: Lower bound (``float``/``int``).
        high: Upper bound (``float``/``int``).
        log: Sample on a log scale.
        choices: The values of a ``choice`` (or the one value of ``fixed``).
    """

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask the trial for a value of this parameter."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        return self.choices[0]

    def spec(self) -> Any:
        """The declared form of this parameter (round-trips through :func:`parse_param`)."""
        if self.kind in ("float", "int"):
            low, high = (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)
            return f"{self.kind}({low!r}, {high!r}{', log' if self.log else ''})"
        if self.kind == "choice":
            return list(self.choices)
        return self.choices[0]

    def probes(self) -> list[Any]:
        """Values that must all be valid: both bounds, or every choice."""
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        if self.kind == "float":
            return [self.low, self.high]
        return list(self.choices)


def parse_param(name: str, spec: Any) -> Param:
    """Parse one declared parameter.

    Args:
        name: The parameter name.
        spec: A spec string, a list of choices or a fixed value.

    Returns:
        The parsed parameter (not yet checked against ``TrainConfig``).

    Raises:
        ConfigError: If the spec cannot be parsed or its bounds are inconsistent.
    """
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"search space parameter {name!r} has an empty choice list", field=name)
        return Param(name, "choice", choices=tuple(spec))
    if isinstance(spec, (bool, int, float)):
        return Param(name, "fixed", choices=(spec,))
    if not isinstance(spec, str):
        raise ConfigError(f"search space parameter {name!r} has an unusable spec {spec!r}", field=name)
    match = _SPEC.match(spec)
    if not match:
        raise ConfigError(
            f"search space parameter {name!r} has spec {spec!r}; expected float(low, high[, log]), "
            "int(low, high[, log]) or choice(a, b, ...)", field=name)
    kind, body = match.group(1).lower(), match.group(2)
    parts = [p.strip() for p in body.split(",") if p.strip()]
    if kind == "choice":
        if not parts:
            raise ConfigError(f"search space parameter {name!r} has an empty choice(...)", field=name)
        return Param(name, "choice", choices=tuple(_atom(p) for p in parts))
    log = bool(parts) and parts[-1].lower() == "log"
    bounds = parts[:-1] if log else parts
    if len(bounds) != 2:
        raise ConfigError(f"search space parameter {name!r} needs exactly two bounds in {spec!r}", field=name)
    try:
        low, high = (float(b) for b in bounds)
    except ValueError:
        raise ConfigError(f"search space parameter {name!r} has non-numeric bounds in {spec!r}",
                          field=name) from None
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"search space parameter {name!r} is int(...) but has bounds {low=}, {high=}",
                          field=name)
    if not low < high:
        raise ConfigError(f"search space parameter {name!r} needs low < high, but got {low=}, {high=}",
                          field=name)
    if log and low <= 0:
        raise ConfigError(f"search space parameter {name!r} is log-scaled, so low must be > 0, "
                          f"but got {low=}", field=name)
    return Param(name, kind, low, high, log)


class Space:
    """A validated search space: parameters plus the rule that turns values into a TrainConfig.

    Args:
        spec: Parameter name → spec (see the module docstring); ``None`` for the default space
            of the base config's network (:func:`default_space`; :data:`DEFAULT_SPACE` for ``mlp``).
        base: The config every trial starts from; used to check each bound and choice.

    Raises:
        ConfigError: Naming the parameter, if a name is unknown or a spec or value is invalid.
    """

    def __init__(self, spec: Mapping[str, Any] | None = None, base: TrainConfig | None = None) -> None:
        from kit import nets

        if spec is not None and not isinstance(spec, Mapping):
            raise ConfigError(f"a search space must be a mapping of name to spec, but got {type(spec).__name__}",
                              field="space")
        self.base = base or TrainConfig()
        spec = dict(default_space(self.base.net) if spec is None else spec)
        if not spec:
            raise ConfigError("the search space is empty; declare at least one parameter", field="space")
        self.builder = nets.resolve(self.base.net)
        known = ({f.name for f in fields(TrainConfig)} - set(NOT_SEARCHABLE)) | {"depth", "width"}
        self.params: dict[str, Param] = {}
        for name, value in spec.items():
            if name not in known and not name.startswith(NET_PREFIX):
                raise ConfigError(f"search space parameter {name!r} is not tunable; use net.<parameter> for the "
                                  f"network's parameters or one of {', '.join(sorted(known))}", field=name)
            param = parse_param(name, value)
            for probe in param.probes():
                try:
                    config = self.to_config({name: probe})
                    nets.check_params(self.builder, config.net_kwargs())
                except KitError as exc:
                    raise ConfigError(f"search space parameter {name!r}: value {probe!r} is invalid: "
                                      f"{exc.message}", field=name) from None
                except (TypeError, ValueError):
                    raise ConfigError(f"search space parameter {name!r}: value {probe!r} has the wrong type",
                                      field=name) from None
            self.params[name] = param

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Ask the trial for every parameter; fixed values are returned as they are."""
        return {name: param.suggest(trial) for name, param in self.params.items()}

    def to_config(self, values: Mapping[str, Any]) -> TrainConfig:
        """The base config with ``values`` applied.

        ``depth``/``width`` become ``hidden``; ``net.<param>`` sets the builder parameter ``<param>``
        (the field of that name for ``hidden``, ``dropout``, ``activation`` and ``norm``, else
        ``net_params``), so ``dropout`` and ``net.dropout`` mean the same.
        """
        values = dict(values)
        depth, width = values.pop("depth", None), values.pop("width", None)
        if depth is not None or width is not None:
            default = list(self.base.hidden or self.base.net_params.get("hidden")
                           or self.builder.defaults().get("hidden") or (128, 64))
            depth = len(default) if depth is None else depth
            width = default[0] if width is None else width
            if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
                raise ConfigError(f"depth must be a positive integer, but got {depth=}", field="depth")
            if not isinstance(width, int) or isinstance(width, bool) or width < 1:
                raise ConfigError(f"width must be a positive integer, but got {width=}", field="width")
            values["hidden"] = (width,) * depth
        net_params = dict(self.base.net_params)
        for name in [n for n in values if n.startswith(NET_PREFIX)]:
            param = name[len(NET_PREFIX):]
            if param in MLP_FIELDS:
                values[param] = values.pop(name)
            else:
                net_params[param] = values.pop(name)
        for field_name in MLP_FIELDS:  # a field set here wins over the same name in the base's net_params
            if field_name in values:
                net_params.pop(field_name, None)
        return self.base.replace(**values, net_params=net_params)

    def check_network(self, n_in: int | tuple[int, ...], n_out: int) -> None:
        """Build the network at every bound and choice of the ``net.*``, ``depth`` and ``width`` parameters.

        Raises:
            ConfigError: Naming the parameter and the value the builder refused.
        """
        from kit import nets

        for name, param in self.params.items():
            if not (name.startswith(NET_PREFIX) or name in ("depth", "width", *MLP_FIELDS)):
                continue
            for probe in param.probes():
                config = self.to_config({name: probe})
                try:
                    nets.call(self.builder, n_in, n_out, config.net_kwargs())
                except KitError as exc:
                    raise ConfigError(f"search space parameter {name!r}: network {self.builder.ref!r} refuses "
                                      f"value {probe!r}: {exc.message}", field=name) from None

    def to_dict(self) -> dict[str, Any]:
        """The declared spec, JSON-able (stored in the study so workers rebuild the same space)."""
        return {name: param.spec() for name, param in self.params.items()}
