"""kit: from a notebook experiment to a production service.

``import kit`` is fast: torch, shap, bentoml and ipywidgets load inside the step that needs
them. The public surface is small::

    import kit
    from kit.train import train

    ds = kit.load("breast_cancer")
    result = train(ds, kit.TrainConfig(epochs=50))
    result.bundle.save("runs/bc")
    kit.ModelBundle.load("runs/bc").predict(rows)

Each step is a module with a function of its name: ``kit.train.train``, ``kit.tune.tune``,
``kit.explain.explain``, ``kit.quantize.compare`` ...
"""

from __future__ import annotations

import importlib
from typing import Any

from kit.config import DataConfig, TrainConfig
from kit.errors import ConfigError, DataError, IntegrityError, KitError, NotFittedError, SchemaError

__version__ = "0.1.0"

_LAZY = {
    "load": "kit.data",
    "Dataset": "kit.data",
    "Preprocessor": "kit.preprocess",
    "ModelBundle": "kit.bundle",
    "Prediction": "kit.bundle",
}

__all__ = [
    "ConfigError",
    "DataConfig",
    "DataError",
    "Dataset",
    "IntegrityError",
    "KitError",
    "ModelBundle",
    "NotFittedError",
    "Prediction",
    "Preprocessor",
    "SchemaError",
    "TrainConfig",
    "load",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kit' has no attribute {name!r}")
