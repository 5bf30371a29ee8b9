"""The compression frontier: every candidate measured on the same rows, its lineage, the JSON table, the plot."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.config import CompressConfig
from kit.quantize._select import tied_fastest

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.bundle import ModelBundle

REFERENCE = "original/torch-fp32"
"""The row every metric drop is measured against: the original network in eager PyTorch."""

MARKERS = {"ort-fp32": "o", "ort-int8-static": "s", "torch-fp32": "X"}
"""Plot marker per runtime variant (colour is the network)."""

JSON_COLUMNS = {"p50_batch1": "p50_batch1_us", "p99_batch1": "p99_batch1_us", "p50_batch64": "p50_batch64_us",
                "p99_batch64": "p99_batch64_us"}
"""Report columns renamed with their unit in the JSON form."""


@dataclass
class CompressReport:
    """Every candidate of :func:`~kit.quantize.compress`: network x runtime variant, measured on the same rows.

    Attributes:
        frame: One row per candidate (index ``<network>/<variant>``): network, variant, status, metric and
            metric_drop on the validation split (versus :data:`REFERENCE`, in the metric's units, positive =
            worse: what the choice uses), test_metric and test_metric_drop (the same on the test split,
            which nothing is chosen on: the unbiased figure to report), p50/p99
            latency at batch 1 and 64 (µs) and their noise, size_bytes, size_ratio (the original's fp32
            ONNX graph over this one), parameters, batch_invariant, lineage (list of steps), network and
            runtime_variant (the parts of the name).
        metric: The primary metric.
        task: The bundle's task.
        chosen: The chosen candidate (:data:`REFERENCE`'s network when nothing smaller qualifies).
        reasons: Why it was chosen, and what happened to the others.
        config: The settings.
        int8: Per network, every static int8 configuration tried (method, per-channel, fp32 nodes,
            metric drop, latency).
        skipped: What could not be tried, and why (pruning a network that is not a Linear chain, a
            student that did not build, the time budget).
        settings: Threads, repeats, rows, load average, seconds taken.
        networks: The candidate networks' bundles by network name (torch runtime, fp32 export).
        artifacts: The ONNX graph of each candidate.
    """

    frame: pd.DataFrame
    metric: str
    task: str
    chosen: str
    reasons: list[str]
    config: CompressConfig
    int8: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    networks: dict[str, ModelBundle] = field(default_factory=dict, repr=False)
    artifacts: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def budget(self) -> float:
        """The accuracy budget of the choice."""
        return float(self.config.budget)

    def lineage(self, candidate: str | None = None) -> list[str]:
        """The steps that made ``candidate`` (default: the chosen one), from the original network to its runtime."""
        steps: list[str] = list(self.frame["lineage"].to_dict()[candidate or self.chosen])
        return steps

    def rows(self) -> list[dict[str, Any]]:
        """Every candidate, JSON-able: ``variant`` (the candidate's name), the numbers, ``lineage``."""
        out = []
        for name, row in self.frame.iterrows():
            entry: dict[str, Any] = {"variant": str(name)}
            for key, value in row.items():
                entry[JSON_COLUMNS.get(str(key), str(key))] = _plain(value)
            out.append(entry)
        return out

    def to_json(self) -> dict[str, Any]:
        """``{"chosen", "budget", "metric", "rows": [...], "reasons", "skipped", "int8", "settings"}``."""
        return {"chosen": self.chosen, "budget": self.budget, "metric": self.metric, "rows": self.rows(),
                "reasons": list(self.reasons), "skipped": list(self.skipped),
                "int8": {k: [{kk: _plain(vv) for kk, vv in t.items()} for t in v] for k, v in self.int8.items()},
                "settings": dict(self.settings), "config": self.config.to_dict()}

    def table(self) -> str:
        """The candidates as an aligned text table (lineage left out: see :meth:`rows`)."""
        cols = ["status", "metric", "metric_drop", "test_metric", "test_metric_drop", "p50_batch1", "p50_batch64",
                "size_bytes", "size_ratio", "parameters", "batch_invariant"]
        shown = self.frame[[c for c in cols if c in self.frame.columns]].rename(
            columns={"metric": f"valid {self.metric}", "metric_drop": "valid drop",
                     "test_metric": f"test {self.metric}", "test_metric_drop": "test drop"})
        return shown.to_string(float_format=lambda v: f"{v:.4g}")

    def __str__(self) -> str:
        return self.table() + f"\nchosen: {self.chosen}\n" + "\n".join(f"  {r}" for r in self.reasons)

    def _repr_html_(self) -> str:
        html: str = self.frame.drop(columns=["lineage"], errors="ignore").to_html(float_format=lambda v: f"{v:.4g}")
        return html

    def plot(self) -> Figure:
        """Metric drop against p50 latency at batch 1, at batch 64, and against size; the budget line; the front."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(13, 4.2))
        axes = fig.subplots(1, 3, sharey=True)
        ok = self.frame[self.frame["status"] == "ok"]
        for ax, column, label in zip(axes, ("p50_batch1", "p50_batch64", "size_bytes"),
                                     ("p50 latency at batch 1 (µs)", "p50 latency at batch 64 (µs)",
                                      "size (bytes)"), strict=True):
            for i, (network, group) in enumerate(ok.groupby("network", sort=False)):
                for variant, part in group.groupby("runtime_variant", sort=False):
                    ax.scatter(part[column], part["metric_drop"], s=36, alpha=0.75, color=f"C{i % 10}",
                               marker=MARKERS.get(str(variant), "o"),
                               label=str(network) if variant == "ort-fp32" else None)
            front = pareto(ok, column)
            ax.plot(front[column], front["metric_drop"], "--", color="grey", lw=1)
            if self.chosen in ok.index:
                row = ok.loc[self.chosen]
                ax.scatter([row[column]], [row["metric_drop"]], s=160, facecolors="none", edgecolors="red", lw=1.5)
            ax.axhline(self.budget, color="red", lw=0.8, ls=":")
            ax.set_xscale("log")
            ax.set_xlabel(label)
        axes[0].set_ylabel(f"{self.metric} drop vs original on validation (positive = worse)")
        axes[0].legend(fontsize=7, loc="best")
        fig.suptitle(f"compression frontier: chosen {self.chosen} (red circle), budget {self.budget} (dotted); "
                     "o fp32 ONNX, s int8, X torch fp32", fontsize=9)
        return fig


def pareto(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The candidates no other beats on both ``column`` (lower) and metric drop (lower)."""
    ordered = frame.sort_values([column, "metric_drop"])
    best, keep = math.inf, list[Any]()
    for name, row in ordered.iterrows():
        if row["metric_drop"] < best:
            best, keep = row["metric_drop"], [*keep, name]
    return ordered.loc[keep]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, tuple):
        return list(value)
    return None if isinstance(value, float) and math.isnan(value) else value


def describe_step(step: dict[str, Any]) -> str:
    """One line for a lineage step recorded by pruning, distillation or int8."""
    kind = step.get("step")
    if kind == "prune":
        tuned = step.get("finetune", {})
        return (f"prune {step['sparsity']:.0%} of hidden units: {step['from_hidden']} -> {step['hidden']}, "
                f"fine-tuned {tuned.get('epochs_run', 0)} epochs")
    if kind == "distill":
        trained = step.get("train", {})
        return (f"distill into {step['net']} (T={step['temperature']}, alpha={step['alpha']}, "
                f"{trained.get('epochs_run', 0)} epochs)")
    return ", ".join(f"{k}={v}" for k, v in step.items())


def choose(frame: pd.DataFrame, budget: float, objective: str) -> tuple[str, list[str]]:
    """The candidate with the lowest ``objective`` within ``budget``, beyond the measurement noise.

    ``budget`` bounds ``metric_drop``, the drop on the validation split; the test split's drop is
    only reported (choosing on it would make it optimistic). Candidates within noise of the
    fastest are tied; the tie goes to the smallest, then the
    batch-invariant one. The original's own rows always qualify (they are what serves when nothing
    smaller does).
    """
    within = (frame["metric_drop"] <= budget + 1e-12) | (frame["network"] == "original")
    ok = frame[(frame["status"] == "ok") & within]
    value, _, _, tied = tied_fastest(ok, objective)
    best = min(tied, key=lambda n: (ok.loc[n, "size_bytes"], not ok.loc[n, "batch_invariant"], value[n]))
    reasons = []
    for name, row in frame.iterrows():
        if name == best:
            why = (f"chosen: lowest {objective} ({value[best]:.1f}) within the budget {budget} beyond the noise"
                   + (f", smallest of those tied with {', '.join(t for t in tied if t != best)}" if len(tied) > 1
                      else "") + f"; metric drop {row['metric_drop']:+.4f} on validation"
                   + (f", {row['test_metric_drop']:+.4f} on test" if "test_metric_drop" in row.index else ""))
        elif row["status"] != "ok":
            why = f"rejected: {row['status']}"
        elif name not in ok.index:
            why = f"rejected: metric drop on validation {row['metric_drop']:+.4f} exceeds budget {budget}"
        elif name in tied:
            why = f"tied within noise ({objective} {value[str(name)]:.1f}) but larger"
        else:
            why = f"slower: {objective} {value[str(name)]:.1f} vs {value[best]:.1f}"
        reasons.append(f"{name}: {why}")
    return best, reasons
