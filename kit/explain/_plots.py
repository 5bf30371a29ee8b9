"""Plots of a :class:`kit.explain.Explanation`, drawn with matplotlib directly.

Each function returns a ``matplotlib.figure.Figure`` that pyplot no longer tracks, so nothing is
shown twice or kept in global state: it works headless (Agg), in notebooks (the returned figure
is displayed) and in the CLI (``fig.savefig``). Categorical features are drawn by category (codes in category order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kit.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.explain import Explanation

POS, NEG = "#d62728", "#1f77b4"


def _figure(width: float, height: float) -> Figure:
    """A new figure, already closed in pyplot (nothing global kept; a notebook shows it once, when returned).

    Headless, matplotlib picks the Agg backend by itself.
    """
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width, height), layout="constrained")
    plt.close(fig)
    return fig


def _top(ex: Explanation, max_display: int) -> list[int]:
    order = np.argsort(-np.abs(ex.values).mean(axis=0), kind="stable")
    return [int(i) for i in order[:max_display]]


def _as_numbers(s: pd.Series) -> tuple[np.ndarray, list[str] | None]:
    """Numeric values of a column, or category codes and the category names."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype=np.float64), None
    strings = s.astype(object).where(s.notna(), "(missing)").astype(str)
    cats = sorted(strings.unique().tolist())
    return strings.map({c: i for i, c in enumerate(cats)}).to_numpy(dtype=np.float64), cats


def bar(ex: Explanation, max_display: int = 15) -> Figure:
    """Mean |SHAP| per feature, largest at the top."""
    idx = _top(ex, max_display)
    mean_abs = np.abs(ex.values).mean(axis=0)[idx]
    fig = _figure(7, 0.35 * len(idx) + 1.2)
    ax = fig.add_subplot()
    ax.barh(range(len(idx))[::-1], mean_abs, color=POS)
    ax.set_yticks(range(len(idx))[::-1], [ex.feature_names[i] for i in idx])
    ax.set_xlabel(f"mean |SHAP value| ({ex.output})")
    ax.set_title(f"Global importance ({ex.method}, {len(ex.values)} rows)")
    return fig


def beeswarm(ex: Explanation, max_display: int = 15) -> Figure:
    """One dot per row and feature at its SHAP value, colored low (blue) to high (red) by feature value."""
    idx = _top(ex, max_display)
    fig = _figure(7, 0.4 * len(idx) + 1.4)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    points = None
    for pos, i in zip(range(len(idx))[::-1], idx, strict=True):
        x = ex.values[:, i]
        raw, _ = _as_numbers(ex.data[ex.feature_names[i]])
        lo, hi = np.nanpercentile(raw, [5, 95]) if np.isfinite(raw).any() else (0.0, 1.0)
        color = np.clip((raw - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
        jitter = rng.uniform(-0.3, 0.3, len(x)) * _density(x)
        points = ax.scatter(x, pos + jitter, c=np.nan_to_num(color, nan=0.5), cmap="coolwarm", s=10,
                            vmin=0, vmax=1, linewidths=0)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(idx))[::-1], [ex.feature_names[i] for i in idx])
    ax.set_xlabel(f"SHAP value ({ex.output})")
    ax.set_title(f"SHAP values per row ({ex.method})")
    if points is not None:
        bar_ = fig.colorbar(points, ax=ax, ticks=[0, 1], aspect=40)
        bar_.ax.set_yticklabels(["low", "high"])
        bar_.set_label("feature value")
    return fig


def _density(x: np.ndarray) -> np.ndarray:
    """Relative local density in [0.2, 1], so dense regions spread wider (a cheap swarm)."""
    if len(x) < 2 or np.ptp(x) == 0:
        return np.ones(len(x))
    hist, edges = np.histogram(x, bins=30)
    where = np.clip(np.digitize(x, edges[1:-1]), 0, len(hist) - 1)
    return np.asarray(0.2 + 0.8 * hist[where] / hist.max(), dtype=np.float64)


def waterfall(ex: Explanation, row: int = 0, max_display: int = 12) -> Figure:
    """From the base value to this row's output, one bar per feature (the rest grouped).

    The title says what was predicted for the row and which output is explained (for a binary
    model, the log-odds of one class, which is negative for a row predicted as the other class).
    """
    if not 0 <= row < len(ex.values):
        raise ConfigError(f"row must be in [0, {len(ex.values)}), but got {row=}", field="row")
    v = ex.values[row]
    order = [int(i) for i in np.argsort(-np.abs(v), kind="stable")]
    shown, rest = order[:max_display - 1], order[max_display - 1:]
    items = [(f"{ex.feature_names[i]} = {_fmt(ex.data.iloc[row][ex.feature_names[i]])}", float(v[i])) for i in shown]
    if rest:
        items.append((f"{len(rest)} other feature{'s' if len(rest) > 1 else ''}", float(v[rest].sum())))
    fig = _figure(8.5, 0.42 * len(items) + 1.9)
    ax = fig.add_subplot()
    base = float(ex.base_values[row])
    ends = np.cumsum([base] + [value for _, value in items])
    lo, hi = float(ends.min()), float(ends.max())
    span = hi - lo or 1.0
    start = base
    for pos, (_, value) in zip(range(len(items))[::-1], items, strict=True):
        ax.barh(pos, value, left=start, color=POS if value >= 0 else NEG)
        # the label goes beyond the bar's far end, inside the axes (limits leave room for it)
        ax.text(start + value + (0.01 * span if value >= 0 else -0.01 * span), pos, f"{value:+.3g}", va="center",
                ha="left" if value >= 0 else "right", fontsize=8, clip_on=True)
        start += value
    ax.set_xlim(lo - 0.2 * span, hi + 0.2 * span)
    ax.set_yticks(range(len(items))[::-1], [label for label, _ in items], fontsize=8)
    ax.axvline(base, color="grey", ls="--", lw=0.8)
    ax.axvline(start, color="black", lw=0.8)
    ax.set_title(_waterfall_title(ex, row, base, start), fontsize=9, loc="left")
    ax.set_xlabel(ex.output)
    return fig


def _waterfall_title(ex: Explanation, row: int, base: float, output: float) -> str:
    predicted = ""
    if ex.predicted is not None:
        p = f" (p = {float(ex.confidence[row]):.3f})" if ex.confidence is not None else ""
        predicted = f"predicted {ex.predicted[row]!r}{p}; "
    explained = f"explaining {ex.output}" if ex.target is None or str(ex.target[row]) in ex.output else \
        f"explaining {ex.output} (class {ex.target[row]!r})"
    return f"Row {row}: {predicted}{explained}\nbase {base:.3g} + SHAP values = output {output:.4g}"


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "missing" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def dependence(ex: Explanation, feature: str | None = None) -> Figure:
    """SHAP value of one feature against its (original) value; categories on the x axis by name."""
    if feature is None:
        feature = ex.feature_names[_top(ex, 1)[0]]
    if feature not in ex.feature_names:
        raise ConfigError(f"unknown feature {feature!r}; known: {', '.join(ex.feature_names)}", field="feature")
    j = ex.feature_names.index(feature)
    x, cats = _as_numbers(ex.data[feature])
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    if cats is not None:
        x = x + np.random.default_rng(0).uniform(-0.15, 0.15, len(x))
        ax.set_xticks(range(len(cats)), cats)
    ax.scatter(x, ex.values[:, j], s=12, color=POS, alpha=0.7, linewidths=0)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"{feature} (original value)")
    ax.set_ylabel(f"SHAP value of {feature}")
    ax.set_title(f"Dependence: {feature}")
    return fig
