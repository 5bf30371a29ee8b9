"""Plotly figures of a study: history, importances, parallel coordinates, intermediate values."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import require

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


def plots(study: optuna.Study) -> dict[str, Any]:
    """Optuna's plotly figures: ``history``, ``importances``, ``parallel``, ``intermediate``.

    Parameter importances need at least two completed trials with varying parameters; the
    figure is left out (and logged) when the study has too few.
    """
    require("plotly", "tune")
    optuna = require("optuna", "tune")
    vis = optuna.visualization
    figs: dict[str, Any] = {"history": vis.plot_optimization_history(study)}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        figs["importances"] = vis.plot_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:
        log.info("no parameter importances for study %s: %s", study.study_name, exc)
    figs["parallel"] = vis.plot_parallel_coordinate(study)
    figs["intermediate"] = vis.plot_intermediate_values(study)
    return figs


def save_plots(study: optuna.Study, path: str | os.PathLike[str]) -> Path:
    """Write every figure of :func:`plots` into one self-contained HTML report (plotly.js inlined once).

    Returns:
        The written path.
    """
    figs = plots(study)
    parts = [f"<h2>{name}</h2>" + fig.to_html(full_html=False, include_plotlyjs=(i == 0))
             for i, (name, fig) in enumerate(figs.items())]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{study.study_name}</title></head>"
                   f"<body><h1>Study {study.study_name}</h1>{''.join(parts)}</body></html>", encoding="utf-8")
    return out
