"""Search spaces for :mod:`kit.tune`: a small declared syntax, validated before any trial runs.

A space maps a parameter name to a spec. Names are :class:`~kit.config.TrainConfig` fields plus
``depth`` and ``width`` (``hidden = (width,) * depth``). Specs::

    "float(1e-4, 3e-2, log)"     a float, uniform or (with ``log``) log-uniform in [low, high]
    "int(16, 256, log)"          an integer in [low, high], optionally log-scaled
    "choice(32, 64, 128)"        one of the listed values (numbers, true/false or bare words)
    [32, 64, 128]                the same choice, as a list
    0.1                          a fixed value (not searched)

Every bound and choice is checked against ``TrainConfig`` up front, so a bad spec fails with a
:class:`~kit.errors.ConfigError` naming the parameter instead of a failed trial later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from kit.config import TrainConfig
from kit.errors import ConfigError, KitError

if TYPE_CHECKING:
    import optuna

DEFAULT_SPACE: dict[str, Any] = {
    "depth": "int(1, 3)",
    "width": "int(16, 256, log)",
    "dropout": "float(0.0, 0.5)",
    "lr": "float(1e-4, 3e-2, log)",
    "weight_decay": "float(1e-6, 1e-2, log)",
    "batch_size": "choice(32, 64, 128, 256)",
}
"""The default MLP space: depth, width, dropout, log-uniform lr and weight decay, batch size."""

NOT_SEARCHABLE = ("net", "hidden", "monitor", "seed", "device", "extra")
"""Config fields a space may not set (the study fixes them, or ``depth``/``width`` cover them)."""

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
        spec: Parameter name → spec (see the module docstring); ``None`` for :data:`DEFAULT_SPACE`.
        base: The config every trial starts from; used to check each bound and choice.

    Raises:
        ConfigError: Naming the parameter, if a name is unknown or a spec or value is invalid.
    """

    def __init__(self, spec: Mapping[str, Any] | None = None, base: TrainConfig | None = None) -> None:
        if spec is not None and not isinstance(spec, Mapping):
            raise ConfigError(f"a search space must be a mapping of name to spec, but got {type(spec).__name__}",
                              field="space")
        spec = dict(DEFAULT_SPACE if spec is None else spec)
        if not spec:
            raise ConfigError("the search space is empty; declare at least one parameter", field="space")
        self.base = base or TrainConfig()
        known = {f.name for f in fields(TrainConfig)} - set(NOT_SEARCHABLE)
        self.params: dict[str, Param] = {}
        for name, value in spec.items():
            if name not in known | {"depth", "width"}:
                raise ConfigError(f"search space parameter {name!r} is not tunable; use one of "
                                  f"{', '.join(sorted(known | {'depth', 'width'}))}", field=name)
            param = parse_param(name, value)
            for probe in param.probes():
                try:
                    self.to_config({name: probe})
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
        """The base config with ``values`` applied (``depth``/``width`` become ``hidden``)."""
        values = dict(values)
        depth, width = values.pop("depth", None), values.pop("width", None)
        if depth is not None or width is not None:
            depth = len(self.base.hidden) if depth is None else depth
            width = self.base.hidden[0] if width is None else width
            if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
                raise ConfigError(f"depth must be a positive integer, but got {depth=}", field="depth")
            if not isinstance(width, int) or isinstance(width, bool) or width < 1:
                raise ConfigError(f"width must be a positive integer, but got {width=}", field="width")
            values["hidden"] = (width,) * depth
        return self.base.replace(**values)

    def to_dict(self) -> dict[str, Any]:
        """The declared spec, JSON-able (stored in the study so workers rebuild the same space)."""
        return {name: param.spec() for name, param in self.params.items()}
