"""ipywidgets panels, one per step, and the :class:`Wizard` that chains them over one session.

``import kit.ui`` is light: ipywidgets and the steps load when a panel is first used::

    from kit.ui import Wizard
    wizard = Wizard(data="breast_cancer")
    wizard              # tabs: Data, Train, Tune, Explain, Quantize, Package & serve
    wizard.run_all()    # every step from code (what a headless papermill run does)

Panels call ``kit`` functions only; no model logic lives here.
"""

from __future__ import annotations

import importlib
from typing import Any

from kit.results import write_results
from kit.ui.session import Session

_LAZY = {
    "Wizard": "kit.ui.wizard",
    "Panel": "kit.ui._base",
    "DataPanel": "kit.ui.data_panel",
    "TrainPanel": "kit.ui.train_panel",
    "TunePanel": "kit.ui.tune_panel",
    "ExplainPanel": "kit.ui.explain_panel",
    "QuantizePanel": "kit.ui.quantize_panel",
    "PackagePanel": "kit.ui.package_panel",
}

__all__ = ["DataPanel", "ExplainPanel", "PackagePanel", "Panel", "QuantizePanel", "Session", "TrainPanel",
           "TunePanel", "Wizard", "write_results"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kit.ui' has no attribute {name!r}")
