"""The config base class, the shared budget and the smoke profile."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from kit.errors import ConfigError

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")

DEFAULT_BUDGET = 0.005
"""Largest accepted drop of the primary metric (0.005 = half a point of accuracy, or of R²)."""

C = TypeVar("C", bound="_Config")


@dataclass(frozen=True)
class SmokeProfile:
    """The tiny settings of a smoke run (CI, ``kit run --smoke``, ``smoke=True`` notebooks).

    Attributes:
        epochs: Training epochs.
        patience: Early-stopping patience.
        n_trials: Tuning trials.
        trial_epochs: Epochs per tuning trial.
        repeats: Timed runs per quantization variant and batch size.
        explain_rows: Rows explained.
        background_size: SHAP background rows.
        latency_samples: One-record predictions timed by the release gate.
    """

    epochs: int = 8
    patience: int = 4
    n_trials: int = 3
    trial_epochs: int = 6
    repeats: int = 50
    explain_rows: int = 20
    background_size: int = 30
    latency_samples: int = 50


SMOKE = SmokeProfile()
"""The one smoke profile every step, panel and notebook uses."""


class _Config:
    """Shared helpers: dict round trip with unknown keys refused by name, copies, smoke settings."""

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-able dict."""
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """Build a config from a dict, refusing unknown keys.

        Args:
            values: Field names and values.

        Returns:
            The validated config.

        Raises:
            ConfigError: If a key is not a field of this config or a value is invalid.
        """
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no field {unknown[0]!r}; known fields: {', '.join(sorted(names))}",
                field=unknown[0],
            )
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        """Return a copy with some fields changed (validated again)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def resolve(cls: type[C], config: C | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> C:
        """``config`` (a config, a dict or ``None`` for the defaults) with ``overrides`` applied.

        This is how a step function takes both a config and keyword shorthands:
        ``explain(bundle, X, method="permutation")`` equals
        ``explain(bundle, X, ExplainConfig(method="permutation"))``.
        """
        base = cls.from_dict(config) if isinstance(config, Mapping) else (config or cls())
        return base.replace(**overrides) if overrides else base

    def smoke(self: C) -> C:
        """This config with the :data:`SMOKE` profile applied (the same copy for any config)."""
        return self

    def smoke_if(self: C, on: bool) -> C:
        """:meth:`smoke` when ``on``, else this config unchanged.

        A notebook's ``smoke`` parameter in one call: ``TrainConfig(epochs=200).smoke_if(smoke)``.
        """
        return self.smoke() if on else self


def _check(cond: bool, message: str, field_name: str) -> None:
    if not cond:
        raise ConfigError(message, field=field_name)


def _positive_ints(config: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
               f"{name} must be an integer >= 1, but got {name}={value!r}.", name)
