"""Figures of a study: Optuna's plotly figures and a static one of every trial, pruned ones included.

The plotly figures (history, importances, parallel coordinates, intermediate values) go into an
HTML report; :func:`plot_trials` is a matplotlib figure that shows inline in a notebook and in its
executed HTML report.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import require

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

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


def importances(study: optuna.Study) -> dict[str, float]:
    """How much each searched parameter explains the results (fANOVA; they sum to 1), largest first.

    Empty when the study cannot tell: fewer than two completed trials with different values (Optuna
    would split nothing evenly among the parameters), or parameters that did not vary.
    """
    optuna = require("optuna", "tune")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len({t.value for t in complete}) < 2:
        return {}
    try:
        found = optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(
            seed=0))
    except (ValueError, RuntimeError) as exc:
        log.info("no parameter importances for study %s: %s", study.study_name, exc)
        return {}
    return {str(k): float(v) for k, v in found.items()}


def plot_trials(study: optuna.Study, metric: str = "objective") -> Figure:
    """Every trial of a study on two panels, pruned trials shown apart from completed ones.

    Left: each trial's validation ``metric`` epoch by epoch (the best so far, as reported to the
    pruner); a pruned trial's curve stops at the epoch it was pruned (marked x). Right: each
    trial's value by trial number (a pruned trial at its last reported value) and the best
    completed value so far.

    Returns:
        A matplotlib Figure (not tracked by pyplot: display it, or ``fig.savefig``).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    optuna = require("optuna", "tune")
    state = optuna.trial.TrialState
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in (state.COMPLETE, state.PRUNED)]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    curves, values = fig.subplots(1, 2)
    styles = {state.COMPLETE: ("C0", "o", "completed"), state.PRUNED: ("C3", "x", "pruned")}
    for kind, (color, marker, label) in styles.items():
        group = [t for t in trials if t.state == kind]
        for i, t in enumerate(group):
            steps = sorted(t.intermediate_values)
            if steps:
                curves.plot(steps, [t.intermediate_values[s] for s in steps], color=color, alpha=0.5, lw=1,
                            label=f"{label} ({len(group)})" if i == 0 else None)
                if kind == state.PRUNED:
                    curves.plot(steps[-1], t.intermediate_values[steps[-1]], marker, color=color)
        points = [(t.number, _value(t)) for t in group if _value(t) is not None]
        values.scatter([n for n, _ in points], [v for _, v in points], color=color, marker=marker,
                       label=f"{label} ({len(group)})")
    done = sorted((t.number, float(t.value)) for t in trials if t.state == state.COMPLETE and t.value is not None)
    best: list[float] = []
    for _, v in done:
        best.append(v if not best else (max if maximize else min)(best[-1], v))
    if done:
        values.step([n for n, _ in done], best, where="post", color="k", lw=1, label="best so far")
    shown = [v for t in trials for v in t.intermediate_values.values()]
    if shown and min(shown) > 0 and max(shown) / min(shown) > 20:  # e.g. log loss from 0.7 down to 0.01
        curves.set_yscale("log")
        values.set_yscale("log")
    curves.set(xlabel="epoch", ylabel=f"valid {metric} (best so far)", title="trials, epoch by epoch")
    values.set(xlabel="trial number", ylabel=f"valid {metric}", title="trials in the order they ran")
    values.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (curves, values):
        ax.legend(fontsize=8)
    return fig


def _value(trial: optuna.trial.FrozenTrial) -> float | None:
    """A finished trial's value: its own, else (pruned) its last reported intermediate value."""
    if trial.value is not None:
        return float(trial.value)
    if trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    return None
