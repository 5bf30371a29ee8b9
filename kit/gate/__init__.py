"""The release gate: checks a bundle must pass before it is packaged.

Accuracy alone does not make a model fit to ship. :func:`check` measures, on the held-out test
split rebuilt from the bundle's own data config (same split seed):

========================  ===================================================================
``metric``                task metric (accuracy / R² by default) >= a floor; without a floor,
                          the trivial baseline (majority class, or the mean) must be beaten
``runtime_drop``          metric drop of the chosen runtime vs the fp32 torch network <= budget (the one the
                          bundle was quantized with, else ``DEFAULT_BUDGET``)
``latency_p99``           p99 of ``bundle.infer`` on one record (the served path) <= budget
``noise_robustness``      share of predictions that flip under small Gaussian noise on numeric
                          features <= limit (regression: mean change in target std units)
``missing_robustness``    same, with one feature at a time set missing, for every row
``calibration``           expected calibration error (classifiers) <= limit
``slice_gap``             spread of the metric across the values of one categorical column
``schema_contract``       the example input validates, round-trips through JSON and predicts
                          the same; bad records are refused naming the field
``explanation_stability`` top-k SHAP features agree across two disjoint backgrounds
========================  ===================================================================

The measurements live in ``_checks.py``, one function per check (``RUNNERS``); ``_gate.py`` runs
them. The :class:`GateReport` goes into the bundle as ``sections["gate"]`` (read back as
``bundle.gate``); packaging reads ``passed`` and refuses a failing bundle.
"""

from __future__ import annotations

from kit.config import GATE_CHECKS as CHECKS
from kit.config import GateConfig
from kit.gate._gate import check, gate
from kit.metrics import expected_calibration_error
from kit.sections import Check, GateReport

__all__ = ["CHECKS", "Check", "GateConfig", "GateReport", "check", "expected_calibration_error", "gate"]
