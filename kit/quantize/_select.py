"""``select()`` a variant within the accuracy budget and ``attach()`` it to a bundle."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.config import QuantizeConfig
from kit.errors import ConfigError
from kit.quantize._compare import QuantReport
from kit.quantize._export import reference_graph
from kit.quantize._graph import _calibration_matrix, quantize_graph
from kit.quantize._variants import BASELINE, OBJECTIVES, SIMPLEST, VARIANTS, check_variants
from kit.sections import QuantizationSection

if TYPE_CHECKING:
    from kit.bundle import ModelBundle


@dataclass
class Selection:
    """What :func:`select` chose and why.

    Attributes:
        variant: The chosen variant name.
        reasons: One line per variant: chosen, slower, over budget, or failed.
        objective: The report column minimized.
        budget: The accuracy budget (largest accepted metric drop).
        report: The report the choice was made from.
    """

    variant: str
    reasons: list[str]
    objective: str
    budget: float
    report: QuantReport

    def __str__(self) -> str:
        return f"chosen: {self.variant}\n" + "\n".join(f"  {r}" for r in self.reasons)


def select(report: QuantReport, budget: float | None = None, objective: str | None = None) -> Selection:
    """The fastest variant within the accuracy budget, where "faster" must be beyond the measurement noise.

    The rule: among the variants whose metric drop is within ``budget`` (torch fp32 always
    qualifies), one variant is faster than another only when its ``objective`` is lower by more
    than the noise of both (``<objective>_noise``: the interquartile range of that latency across
    the interleaved timing rounds of the same run). Every variant within noise of the fastest is
    tied, and the tie goes to the simplest (:data:`~kit.quantize._variants.SIMPLEST`: exact fp32
    before fp16 before int8, batch-invariant before dynamic int8, ONNX Runtime before torch). So
    a choice does not flip between runs on a difference the machine cannot measure.

    Where torch fp32 could not run (no torch, or the builder is missing here), fp32 ONNX takes its place.

    Args:
        report: From :func:`~kit.quantize.compare`.
        budget: Largest accepted drop of the primary metric versus torch fp32 (0.005 = 0.5 point);
            ``None``: the budget of the report's config (by default :data:`~kit.config.DEFAULT_BUDGET`).
        objective: Column to minimize, one of :data:`OBJECTIVES`; ``None``: the report config's.

    Raises:
        ConfigError: On a negative budget or unknown objective.
    """
    budget = report.config.budget if budget is None else budget
    objective = objective or report.config.objective
    if not budget >= 0:
        raise ConfigError(f"budget must be >= 0, but got {budget=}", field="budget")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, but got {objective=}",
                          field="objective")
    frame = report.frame
    ok = frame[(frame["status"] == "ok") & (frame["metric_drop"] <= budget + 1e-12)]
    fallback = _fallback(frame)
    if fallback is not None and fallback not in ok.index:
        ok = pd.concat([ok, frame.loc[[fallback]]])
    if ok.empty:
        raise ConfigError("no variant can serve this bundle: " + "; ".join(
            f"{name}: {row['status']}" for name, row in frame.iterrows()), field="variants")
    value, noise, fastest, tied = tied_fastest(ok, objective)
    rank = {name: i for i, name in enumerate(SIMPLEST)}
    best = min(tied, key=lambda n: (rank.get(n, len(rank)), value[n]))
    unit = "" if objective == "size_bytes" else " µs"

    def shown(name: str) -> str:
        return f"{value[name]:.1f}{unit}" + (f" ± {noise[name] / 2:.1f}" if noise[name] else "")

    reasons = []
    for name, row in frame.iterrows():
        if name == best:
            if len(ok) == 1:
                why = f"chosen: no other variant qualifies within a metric drop of {budget}"
            elif len(tied) > 1:
                others = ", ".join(t for t in tied if t != best)
                why = (f"chosen: within measurement noise of the fastest ({objective} {shown(best)} vs "
                       f"{others}), and the simplest of them; metric drop {row['metric_drop']:+.4f} <= {budget}")
            else:
                why = (f"chosen: fastest within budget beyond the noise ({objective} {shown(best)}, metric drop "
                       f"{row['metric_drop']:+.4f} <= {budget})")
        elif row["status"] != "ok":
            why = f"rejected: {row['status']}"
        elif name not in ok.index:
            why = f"rejected: metric drop {row['metric_drop']:+.4f} exceeds budget {budget}"
        elif name in tied:
            why = f"tied within noise ({objective} {shown(str(name))}) but less simple than {best}"
        else:
            why = f"slower: {objective} {shown(str(name))} vs {shown(fastest)}"
        reasons.append(str(name) + ": " + why)
    return Selection(best, reasons, objective, float(budget), report)


def tied_fastest(ok: pd.DataFrame, objective: str) -> tuple[pd.Series, dict[str, float], str, list[str]]:
    """The qualifying rows' ``objective`` values and noise, the fastest row, and the rows tied with it.

    Two rows are tied when their difference is within the larger of their measurement noises; the
    caller breaks the tie (simplest variant, smallest network).
    """
    value = ok[objective].astype(float)
    noise = _noise(ok, objective)
    fastest = str(value.idxmin())
    tied = [str(n) for n in ok.index if value[n] - value[fastest] <= max(noise[n], noise[fastest]) + 1e-12]
    return value, noise, fastest, tied


def _noise(frame: pd.DataFrame, objective: str) -> dict[str, float]:
    """Each variant's measurement noise of ``objective`` (0 where not measured, e.g. sizes)."""
    column = f"{objective}_noise"
    if column not in frame.columns:
        return {str(n): 0.0 for n in frame.index}
    return {str(n): float(v) if v == v else 0.0 for n, v in frame[column].items()}


def _fallback(frame: pd.DataFrame) -> str | None:
    """What serves when no faster variant qualifies: torch fp32, or fp32 ONNX where torch cannot run."""
    for name in (BASELINE, "ort-fp32"):
        if name in frame.index and frame.loc[name, "status"] == "ok":
            return name
    return None


def attach(bundle: ModelBundle, variant: str | Selection, *, report: QuantReport | None = None,
           calibration: Any = None, threads: int | None = None, inter_threads: int = 1) -> ModelBundle:
    """A copy of ``bundle`` that predicts with ``variant``.

    Args:
        bundle: The source bundle (unchanged).
        variant: A variant name or a :class:`Selection`.
        report: The report the graph comes from (taken from the selection when given); without
            one, the graph is built now.
        calibration: Raw training rows, when building ``ort-int8-static`` without a report
            (default: the bundle's own training split).
        threads: Intra-op threads stored in the runtime options (default: the report's, else 1).
        inter_threads: Inter-op threads stored in the runtime options.

    Returns:
        The new bundle; ``runtime_info`` names the runtime, variant, artifact and its sha256, and
        the :class:`~kit.sections.QuantizationSection` holds the choice, the budget and the report.
    """
    reasons = ["chosen by name"]
    selection: Selection | None = None
    if isinstance(variant, Selection):
        selection, report = variant, variant.report
        name, reasons = selection.variant, selection.reasons
    else:
        name = check_variants([variant])[0]
    config = report.config if report is not None else QuantizeConfig()
    threads = threads or config.threads
    spec = VARIANTS[name]
    clone = bundle.copy()
    clone.artifacts = {k: v for k, v in clone.artifacts.items() if not (k.startswith("model.") and k.endswith(".onnx"))}
    if spec.runtime == "torch":
        clone.runtime_info = {"name": "torch", "variant": "fp32"}
    else:
        data = report.artifacts.get(name) if report is not None else None
        if data is None:
            graph, _ = reference_graph(bundle)
            if name == "ort-int8-static" and calibration is None:
                calibration = bundle.reload_data().splits.train.X
            calib = _calibration_matrix(bundle, calibration) if name == "ort-int8-static" else None
            data = quantize_graph(graph, name, calib)
        assert spec.artifact is not None
        clone.artifacts[spec.artifact] = data
        clone.runtime_info = {"name": "onnxruntime", "variant": name, "artifact": spec.artifact,
                              "sha256": hashlib.sha256(data).hexdigest(),
                              "options": {"threads": threads, "inter_threads": inter_threads}}
    section = QuantizationSection(
        chosen=name, reasons=reasons, runtime=dict(clone.runtime_info),
        budget=selection.budget if selection is not None else config.budget,
        objective=selection.objective if selection is not None else config.objective,
        metric=report.metric if report is not None else bundle.primary_metric, baseline=BASELINE,
        variants=report.variants() if report is not None else {},
        settings=dict(report.settings) if report is not None else {},
        export=dict(report.export) if report is not None else {}, config=config.to_dict())
    clone = clone.with_section(section)
    clone.sections.pop("gate", None)  # a gate verdict measured another runtime: this model is not gated yet
    clone.configs.pop("gate", None)
    clone.configs["quantize"] = config.to_dict()
    clone.runtime.run(np.ascontiguousarray(clone.transform(clone.example(2))))  # fails now, not in serving
    return clone
