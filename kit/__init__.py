"""kit: from a notebook experiment to a production service.

``import kit`` is fast: torch, shap, bentoml and ipywidgets load inside the step that needs
them. The public surface is small::

    import kit
    from kit.train import train

    ds = kit.load("breast_cancer")
    result = train(ds, kit.TrainConfig(epochs=50))
    result.bundle.save("runs/bc")
    kit.ModelBundle.load("runs/bc").predict(rows)

Each step is a package with a function of its name and a config next to ``DataConfig`` and
``TrainConfig``: ``kit.tune.tune`` (:class:`TuneConfig`), ``kit.explain.explain``
(:class:`ExplainConfig`), ``kit.quantize.compare`` / ``select`` / ``attach`` (:class:`QuantizeConfig`),
``kit.gate.gate`` (:class:`GateConfig`), ``kit.package`` (model store, promotions, servers) and
``kit.serving`` (what the HTTP service adds). The ``kit`` command lives in ``kit.cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

from kit.config import (
    DEFAULT_BUDGET,
    SMOKE,
    DataConfig,
    ExplainConfig,
    GateConfig,
    QuantizeConfig,
    TrainConfig,
    TuneConfig,
)
from kit.errors import ConfigError, DataError, IntegrityError, KitError, NotFittedError, SchemaError

__version__ = "0.1.0"

_LAZY = {
    "load": "kit.data",
    "Dataset": "kit.data",
    "Preprocessor": "kit.preprocess",
    "ModelBundle": "kit.bundle",
    "Prediction": "kit.prediction",
}

__all__ = [
    "DEFAULT_BUDGET",
    "SMOKE",
    "ConfigError",
    "DataConfig",
    "DataError",
    "Dataset",
    "ExplainConfig",
    "GateConfig",
    "IntegrityError",
    "KitError",
    "ModelBundle",
    "NotFittedError",
    "Prediction",
    "Preprocessor",
    "QuantizeConfig",
    "SchemaError",
    "TrainConfig",
    "TuneConfig",
    "load",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kit' has no attribute {name!r}")
