"""Typed configs, one per step. Each validates itself in ``__post_init__``.

A config is the notebook's ``parameters`` cell in typed form: the CLI flags and the widgets map
onto the same fields, and the config travels into the bundle's ``configs`` (and from there into
the model store metadata and the service's ``/metadata``), so a served model says how it was made.

Two values are shared by every step and live here once:

* :data:`DEFAULT_BUDGET`: the accuracy budget, the largest accepted drop of the primary metric
  (quantization picks a variant within it; the release gate checks the served runtime against
  the budget the bundle was quantized with, or this one).
* :data:`SMOKE`: the smoke profile, the tiny settings CI runs every notebook and panel with;
  each config's :meth:`~_Config.smoke` applies it.
"""

from __future__ import annotations

from kit.config._base import DEFAULT_BUDGET, SMOKE, TASKS, SmokeProfile, Task, _check, _Config
from kit.config._data import ACTIVATIONS, MLP_FIELDS, NORMS, SCHEDULERS, DataConfig, TrainConfig
from kit.config._steps import (
    CALIBRATIONS,
    EXPLAIN_METHODS,
    EXPLAIN_OUTPUTS,
    GATE_CHECKS,
    PRUNERS,
    QUANTIZE_OBJECTIVES,
    SAMPLERS,
    CompressConfig,
    ExplainConfig,
    GateConfig,
    QuantizeConfig,
    TuneConfig,
)

__all__ = [
    "ACTIVATIONS",
    "CALIBRATIONS",
    "DEFAULT_BUDGET",
    "EXPLAIN_METHODS",
    "EXPLAIN_OUTPUTS",
    "GATE_CHECKS",
    "MLP_FIELDS",
    "NORMS",
    "PRUNERS",
    "QUANTIZE_OBJECTIVES",
    "SAMPLERS",
    "SCHEDULERS",
    "SMOKE",
    "TASKS",
    "CompressConfig",
    "DataConfig",
    "ExplainConfig",
    "GateConfig",
    "QuantizeConfig",
    "SmokeProfile",
    "Task",
    "TrainConfig",
    "TuneConfig",
    "_Config",
    "_check",
]
