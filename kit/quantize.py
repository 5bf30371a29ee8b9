"""Quantization and runtimes side by side: fp32 / int8 / fp16, pick the fastest within a budget.

Variants, by name (see :data:`VARIANTS`)::

    torch-fp32        eager PyTorch, the reference
    ort-fp32          the exported ONNX graph on ONNX Runtime
    ort-int8-dynamic  int8 weights, activations quantized on the fly
    ort-int8-static   int8 QDQ graph, activation ranges calibrated on training rows
    ort-fp16          fp16 weights and compute, fp32 inputs and outputs

Typical use::

    report = compare(bundle, X_test, y_test, calibration=X_train)
    choice = select(report, max_metric_drop=0.005)
    served = bundle.with_runtime(choice)        # ONNX artifact + sha256 + summary in the bundle

Export uses ``torch.onnx.export`` (the dynamo exporter, the TorchScript one as a fallback)
with a dynamic batch axis; a graph is accepted only when ONNX Runtime reproduces the torch
outputs within :data:`EXPORT_RTOL` / :data:`EXPORT_ATOL` at batch sizes 1, 5 and 64.
Latencies are of ``runtime.run`` on preprocessed rows (preprocessing is the same for every
variant), in microseconds, after a warm-up, with ``threads`` intra-op threads.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import logging
import math
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.errors import ConfigError, DataError, KitError, require
from kit.runtime import OnnxRuntime, Runtime, TorchRuntime

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.bundle import ModelBundle


@dataclass(frozen=True)
class Variant:
    """One way to run the network.

    Attributes:
        name: The variant's name, e.g. ``"ort-int8-dynamic"``.
        runtime: The runtime that serves it (``torch`` or ``onnxruntime``).
        precision: ``fp32``, ``int8`` or ``fp16``.
        tolerance: Largest accepted difference from torch fp32 on the test split: of class
            probabilities (classification) or of values in target standard deviations (regression).
    """

    name: str
    runtime: str
    precision: str
    tolerance: float

    @property
    def artifact(self) -> str | None:
        """File name of its ONNX graph in a bundle (``None`` for torch)."""
        return None if self.runtime == "torch" else f"model.{self.name}.onnx"


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("torch-fp32", "torch", "fp32", 0.0),
    Variant("ort-fp32", "onnxruntime", "fp32", 1e-4),
    Variant("ort-int8-dynamic", "onnxruntime", "int8", 0.05),
    Variant("ort-int8-static", "onnxruntime", "int8", 0.08),
    Variant("ort-fp16", "onnxruntime", "fp16", 5e-3),
)}
"""Every variant kit knows, by name."""

BASELINE = "torch-fp32"
EXPORT_RTOL = 1e-4
EXPORT_ATOL = 1e-4
MIN_CALIBRATION = 32
"""Fewest calibration rows accepted for static int8."""
OBJECTIVES = ("p50_batch1", "p99_batch1", "p50_batch64", "p99_batch64", "size_bytes")


class ExportError(KitError):
    """The network cannot be exported to a faithful ONNX graph (torch stays the runtime)."""


# -- building artifacts --------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "root")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    sink = io.StringIO()  # exporters print graphs and hints on failure; the reason is kept instead
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def compact(model: Any) -> bytes:
    """Serialize an ONNX model without doc strings, metadata, shape hints or long tensor names.

    Shortening names keeps small int8 graphs small (names and metadata can outweigh the weights).
    Graph input and output names are kept.
    """
    graph = model.graph
    model.doc_string = graph.doc_string = ""
    del model.metadata_props[:]
    del graph.value_info[:]
    for value in [*graph.input, *graph.output]:
        value.doc_string = ""
        del value.metadata_props[:]
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        return name if name in keep else names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.doc_string = ""
        del init.metadata_props[:]
        init.name = short(init.name)
    for node in graph.node:
        node.name = node.doc_string = ""
        del node.metadata_props[:]
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    data: bytes = model.SerializeToString()
    return data


def _torch_module(bundle: ModelBundle) -> Any:
    torch = require("torch", "train")
    from kit import nets

    module = nets.build(bundle.spec)
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in bundle.weights.items()})
    return module.eval()


def _export_with(module: Any, example: Any, exporter: str) -> Any:
    import onnx
    import torch

    with _quiet():
        if exporter == "dynamo":
            program = torch.onnx.export(module, (example,), None, dynamo=True, input_names=["x"],
                                        output_names=["y"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                        optimize=True, verbose=False)
            assert program is not None
            return program.model_proto
        buffer: Any = io.BytesIO()
        torch.onnx.export(module, (example,), buffer, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
        return onnx.load_from_string(buffer.getvalue())


def export_onnx(bundle: ModelBundle,
                exporters: Sequence[str] = ("dynamo", "torchscript")) -> tuple[bytes, dict[str, Any]]:
    """Export the bundle's network to an fp32 ONNX graph with a dynamic batch axis, verified.

    Args:
        bundle: The bundle whose network (spec + weights) is exported.
        exporters: ``torch.onnx.export`` modes to try in order.

    Returns:
        The serialized graph and what was checked (exporter, opset, largest difference).

    Raises:
        ExportError: If no exporter yields a graph that matches torch within tolerance.
    """
    torch = require("torch", "train")
    module = _torch_module(bundle)
    rng = np.random.default_rng(0)
    probes = [rng.normal(size=(n, bundle.spec["n_in"])).astype(np.float32) for n in (1, 5, 64)]
    problems: list[str] = []
    for exporter in exporters:
        try:
            data = compact(_export_with(module, torch.from_numpy(probes[1]), exporter))
            runtime = OnnxRuntime(bundle, model=data)
        except Exception as exc:  # exporters raise many types; the reason is what matters
            first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc).strip()).splitlines()[0][:300] if str(exc).strip() else ""
            problems.append(f"{exporter}: {type(exc).__name__}: {first}")
            continue
        worst = 0.0
        with torch.inference_mode():
            for x in probes:
                ref = module(torch.from_numpy(x)).numpy()
                diff = np.abs(runtime.run(x) - ref) - EXPORT_RTOL * np.abs(ref)
                worst = max(worst, float(diff.max()))
        if worst <= EXPORT_ATOL:
            opset = max((o.version for o in _load_onnx(data).opset_import if o.domain in ("", "ai.onnx")), default=0)
            return data, {"exporter": exporter, "opset": opset, "max_abs_diff": worst,
                          "rtol": EXPORT_RTOL, "atol": EXPORT_ATOL, "batch_sizes_checked": [1, 5, 64]}
        problems.append(f"{exporter}: outputs differ from torch by {worst:.3g} (beyond rtol {EXPORT_RTOL} "
                        f"+ atol {EXPORT_ATOL})")
    raise ExportError(f"network {bundle.spec.get('name')!r} cannot be exported to ONNX: " + "; ".join(problems),
                      field="net")


def _load_onnx(data: bytes) -> Any:
    import onnx

    return onnx.load_from_string(data)


def _calibration_matrix(bundle: ModelBundle, calibration: Any) -> np.ndarray:
    if calibration is None:
        raise DataError("ort-int8-static needs calibration rows (pass the training split as calibration=)",
                        field="calibration")
    x = np.ascontiguousarray(bundle.transform(calibration))
    if len(x) < MIN_CALIBRATION:
        raise DataError(f"calibration set too small for ort-int8-static: {len(x)} rows, need at least "
                        f"{MIN_CALIBRATION} (use the training split)", field="calibration")
    return x


def quantize_graph(fp32: bytes, variant: str, calibration: np.ndarray | None = None) -> bytes:
    """Turn a verified fp32 ONNX graph into the named variant's graph.

    Args:
        fp32: The serialized fp32 graph from :func:`export_onnx`.
        variant: ``ort-fp32``, ``ort-int8-dynamic``, ``ort-int8-static`` or ``ort-fp16``.
        calibration: Preprocessed float32 rows (static int8 only).

    Returns:
        The serialized graph.
    """
    check_variants([variant])
    if variant == "ort-fp32":
        return _optimize(fp32)
    if variant == "ort-fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        with _quiet():
            return _optimize(compact(convert_float_to_float16(_load_onnx(fp32), keep_io_types=True)))
    from onnxruntime import quantization as q

    with tempfile.TemporaryDirectory() as tmp, _quiet():
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        if variant == "ort-int8-dynamic":
            q.quantize_dynamic(src, dst, weight_type=q.QuantType.QInt8, extra_options={"MatMulConstBOnly": True})
        else:
            assert calibration is not None, "static int8 needs calibration rows"
            batches = iter([{"x": calibration[i:i + 64]} for i in range(0, min(len(calibration), 1024), 64)])

            class Reader(q.CalibrationDataReader):  # type: ignore[misc]
                def get_next(self) -> dict[str, np.ndarray] | None:
                    return next(batches, None)

            q.quantize_static(src, dst, Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                              activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                              calibrate_method=q.CalibrationMethod.MinMax)
        return _optimize(dst.read_bytes())


def _optimize(graph: bytes) -> bytes:
    """Apply ONNX Runtime's extended graph fusions once, offline, and store the fused graph.

    Fusing (e.g. DynamicQuantizeLinear + MatMulInteger + Cast + Mul + Add into one
    DynamicQuantizeMatMul) makes the stored graph smaller and faster to load; the result uses
    ``com.microsoft`` operators, so it is for ONNX Runtime only (which is what serves it).
    """
    ort = require("onnxruntime", "quantize")
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(tmp) / "fused.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        model = _load_onnx((Path(tmp) / "fused.onnx").read_bytes())
    used = {node.domain or "" for node in model.graph.node} | {""}
    kept = [o for o in model.opset_import if (o.domain or "") in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return compact(model)


def check_variants(names: Sequence[str]) -> list[str]:
    """Return ``names`` as a list, refusing an unknown variant with the known ones listed."""
    for name in names:
        if name not in VARIANTS:
            raise ConfigError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}", field="variants")
    return list(names)


# -- comparing ------------------------------------------------------------------------------------
@dataclass
class QuantReport:
    """Per-variant results of :func:`compare` (``frame``) and the graphs that were measured.

    Attributes:
        frame: One row per variant (index): status, metric, metric_drop, label_agreement,
            max_abs_diff, within_tolerance, p50/p99 latency at batch 1 and 64 (µs), rows_per_s,
            size_bytes, size_ratio (fp32 safetensors / artifact), load_ms.
        metric: The task metric compared (the bundle's primary metric).
        task: The bundle's task.
        artifacts: Serialized ONNX graph per ONNX variant that was built.
        info: Threads, rows, repeats, export check or failure reason.
    """

    frame: pd.DataFrame
    metric: str
    task: str
    artifacts: dict[str, bytes] = field(default_factory=dict, repr=False)
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary: settings plus every variant's numbers."""
        rows = {name: {k: _plain(v) for k, v in row.items()} for name, row in self.frame.to_dict("index").items()}
        return {"metric": self.metric, "task": self.task, "baseline": BASELINE, **self.info, "variants": rows}

    def table(self) -> str:
        """The report as an aligned text table."""
        cols = ["status", "metric", "metric_drop", "label_agreement", "max_abs_diff", "p50_batch1",
                "p99_batch1", "p50_batch64", "p99_batch64", "rows_per_s", "size_bytes", "size_ratio", "load_ms"]
        shown = self.frame[[c for c in cols if c in self.frame.columns]].rename(columns={"metric": self.metric})
        return shown.to_string(float_format=lambda v: f"{v:.4g}")

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        html: str = self.frame.to_html(float_format=lambda v: f"{v:.4g}")
        return html

    def plot(self, ax: Any = None) -> Figure:
        """Pareto plot: p50 batch-1 latency vs metric, marker area proportional to artifact size."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4)) if ax is None else ax.figure
        ax = ax or fig.add_subplot()
        ok = self.frame[self.frame["status"] == "ok"]
        sizes = 40 + 400 * ok["size_bytes"] / max(float(ok["size_bytes"].max()), 1.0)
        ax.scatter(ok["p50_batch1"], ok["metric"], s=sizes, alpha=0.6)
        for name, row in ok.iterrows():
            ax.annotate(str(name), (row["p50_batch1"], row["metric"]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        front = _pareto(ok)
        ax.plot(front["p50_batch1"], front["metric"], "--", color="grey", lw=1)
        ax.set_xlabel("p50 latency at batch 1 (µs)")
        ax.set_ylabel(f"{self.metric} (test)")
        ax.set_title("variants: latency vs metric (marker area = size)")
        return fig


def _pareto(frame: pd.DataFrame) -> pd.DataFrame:
    ordered = frame.sort_values(["p50_batch1", "metric"], ascending=[True, False])
    best, keep = -math.inf, list[Any]()
    for name, row in ordered.iterrows():
        if row["metric"] > best:
            best, keep = row["metric"], [*keep, name]
    return ordered.loc[keep]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def _latencies(runtimes: dict[str, Runtime], batches: dict[int, np.ndarray], repeats: int, warmup: int,
               rounds: int = 10) -> dict[tuple[str, int], tuple[float, float]]:
    """p50 and p99 of ``runtime.run`` in microseconds, per (variant, batch size).

    The runtimes take turns: ``rounds`` rounds, each timing every runtime and batch size for
    ``repeats / rounds`` runs, so a slow spell of a shared machine hits every variant alike
    instead of whichever happened to be measured then.
    """
    for runtime in runtimes.values():
        for x in batches.values():
            for _ in range(warmup):
                runtime.run(x)
    rounds = max(1, min(rounds, repeats))
    samples: dict[tuple[str, int], list[np.ndarray]] = {(n, b): [] for n in runtimes for b in batches}
    for r in range(rounds):
        count = repeats // rounds + (1 if r < repeats % rounds else 0)
        for name, runtime in runtimes.items():
            for size, x in batches.items():
                times = np.empty(count)
                for i in range(count):
                    start = time.perf_counter_ns()
                    runtime.run(x)
                    times[i] = time.perf_counter_ns() - start
                samples[(name, size)].append(times)
    out = {}
    for key, parts in samples.items():
        times = np.concatenate(parts) / 1e3
        out[key] = (float(np.percentile(times, 50)), float(np.percentile(times, 99)))
    return out


def compare(bundle: ModelBundle, X: Any, y: Any, variants: Sequence[str] | None = None, *,
            calibration: Any = None, threads: int = 1, repeats: int = 300, warmup: int = 30) -> QuantReport:
    """Build and measure variants side by side on rows ``X`` with raw targets ``y``.

    Args:
        bundle: A trained bundle (its weights are the fp32 reference).
        X: Evaluation rows (the test split), raw features.
        y: Their raw labels or values.
        variants: Names from :data:`VARIANTS`; default all (static int8 only with ``calibration``).
            ``torch-fp32`` is always measured as the reference.
        calibration: Raw training rows for static int8 (at least :data:`MIN_CALIBRATION`).
        threads: Intra-op threads for every runtime (1 = batch-1 serving).
        repeats: Timed runs per variant and batch size, taken in 10 interleaved rounds so that
            every variant sees the same machine conditions.
        warmup: Untimed runs before timing, per variant and batch size.

    Returns:
        The report; ONNX variants the network cannot produce carry status ``failed: <reason>``.

    Raises:
        ConfigError: Unknown variant or bad settings.
        DataError: Static int8 with a missing or too small calibration set.
    """
    torch = require("torch", "train")
    from safetensors.numpy import save as st_save

    if variants is None:
        variants = [v for v in VARIANTS if v != "ort-int8-static" or calibration is not None]
    names = check_variants([BASELINE, *[v for v in variants if v != BASELINE]])
    if threads < 1 or repeats < 1 or warmup < 0:
        raise ConfigError(f"threads and repeats must be >= 1 and warmup >= 0, but got {threads=}, {repeats=}, "
                          f"{warmup=}", field="threads")
    calib = _calibration_matrix(bundle, calibration) if "ort-int8-static" in names else None
    x = np.ascontiguousarray(bundle.transform(X))
    if len(x) == 0:
        raise DataError("compare needs at least one evaluation row", field="X")
    batches = {1: np.ascontiguousarray(x[:1]), 64: np.ascontiguousarray(np.resize(x, (64, x.shape[1])))}
    fp32_size = len(st_save({k: np.ascontiguousarray(v) for k, v in bundle.weights.items()}))
    saved_threads = torch.get_num_threads()
    info: dict[str, Any] = {"threads": threads, "rows": len(x), "repeats": repeats, "warmup": warmup,
                            "calibration_rows": None if calib is None else len(calib),
                            "latency": "runtime.run on preprocessed rows, microseconds",
                            "fp32_safetensors_bytes": fp32_size}
    artifacts: dict[str, bytes] = {}
    failure: str | None = None
    if any(VARIANTS[n].runtime == "onnxruntime" for n in names):
        try:
            fp32_graph, info["export"] = export_onnx(bundle)
        except ExportError as exc:
            failure, info["export"] = exc.message, {"error": exc.message}
    probe = bundle.copy()
    rows: dict[str, dict[str, Any]] = {}
    runtimes: dict[str, Runtime] = {}
    sizes: dict[str, dict[str, float]] = {}
    reference: Any = None
    try:
        for name in names:
            variant = VARIANTS[name]
            if variant.runtime == "onnxruntime":
                if failure is not None:
                    rows[name] = {"status": f"failed: {failure}"}
                    continue
                artifacts[name] = quantize_graph(fp32_graph, name, calib)
            start = time.perf_counter()
            runtime: Runtime = (TorchRuntime(bundle, threads=threads) if variant.runtime == "torch"
                                else OnnxRuntime(bundle, model=artifacts[name], threads=threads))
            load_ms = (time.perf_counter() - start) * 1e3
            probe.set_runtime(runtime)
            pred = probe.infer(X)
            metric = probe.evaluate(X, y)[bundle.primary_metric]
            if reference is None:
                reference = (pred, metric)
            rows[name] = _accuracy_row(bundle, variant, pred, reference, metric)
            size = fp32_size if variant.runtime == "torch" else len(artifacts[name])
            sizes[name] = {"size_bytes": size, "size_ratio": fp32_size / size, "load_ms": load_ms}
            runtimes[name] = runtime
        timed = _latencies(runtimes, batches, repeats, warmup)
        for name in runtimes:
            (p50_1, p99_1), (p50_64, p99_64) = timed[(name, 1)], timed[(name, 64)]
            rows[name].update(p50_batch1=p50_1, p99_batch1=p99_1, p50_batch64=p50_64, p99_batch64=p99_64,
                              rows_per_s=64 / (p50_64 / 1e6), **sizes[name])
    finally:
        torch.set_num_threads(saved_threads)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "variant"
    return QuantReport(frame, bundle.primary_metric, bundle.task, artifacts, info)


def _accuracy_row(bundle: ModelBundle, variant: Variant, pred: Any, reference: tuple[Any, float],
                  metric: float) -> dict[str, Any]:
    from kit.metrics import HIGHER_IS_BETTER

    ref, ref_metric = reference
    sign = 1.0 if HIGHER_IS_BETTER[bundle.primary_metric] else -1.0
    if bundle.task == "regression":
        diff = float(np.max(np.abs(pred.values - ref.values)))
        scaled, agreement = diff / (bundle.target_scaling or {"std": 1.0})["std"], float("nan")
    else:
        diff = scaled = float(np.max(np.abs(pred.probabilities - ref.probabilities)))
        agreement = float(np.mean(np.asarray(pred.labels, dtype=object) == np.asarray(ref.labels, dtype=object)))
    return {"runtime": variant.runtime, "precision": variant.precision, "status": "ok", "metric": metric,
            "metric_drop": sign * (ref_metric - metric), "label_agreement": agreement, "max_abs_diff": diff,
            "tolerance": variant.tolerance, "within_tolerance": bool(scaled <= variant.tolerance + 1e-12)}


# -- choosing --------------------------------------------------------------------------------------
@dataclass
class Selection:
    """What :func:`select` chose and why.

    Attributes:
        variant: The chosen variant name.
        reasons: One line per variant: chosen, slower, over budget, or failed.
        objective: The report column minimized.
        max_metric_drop: The accuracy budget.
        report: The report the choice was made from.
    """

    variant: str
    reasons: list[str]
    objective: str
    max_metric_drop: float
    report: QuantReport

    def __str__(self) -> str:
        return f"chosen: {self.variant}\n" + "\n".join(f"  {r}" for r in self.reasons)


def select(report: QuantReport, max_metric_drop: float = 0.005, objective: str = "p50_batch1") -> Selection:
    """The fastest variant whose metric drop is within budget; torch fp32 when none other qualifies.

    Args:
        report: From :func:`compare`.
        max_metric_drop: Largest accepted drop of the primary metric versus torch fp32 (0.005 = 0.5 point).
        objective: Column to minimize: one of :data:`OBJECTIVES`.

    Raises:
        ConfigError: On a negative budget or unknown objective.
    """
    if not max_metric_drop >= 0:
        raise ConfigError(f"max_metric_drop must be >= 0, but got {max_metric_drop=}", field="max_metric_drop")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, but got {objective=}",
                          field="objective")
    frame = report.frame
    ok = frame[(frame["status"] == "ok") & (frame["metric_drop"] <= max_metric_drop + 1e-12)]
    if BASELINE not in ok.index and BASELINE in frame.index:
        ok = pd.concat([ok, frame.loc[[BASELINE]]])
    best = str(ok[objective].astype(float).idxmin())
    unit = "" if objective == "size_bytes" else " µs"
    reasons = []
    for name, row in frame.iterrows():
        if name == best:
            why = "chosen: " + (f"fastest within budget ({objective} {row[objective]:.1f}{unit}, metric drop "
                                f"{row['metric_drop']:+.4f} <= {max_metric_drop})" if best != BASELINE or len(ok) > 1
                                else f"no other variant qualifies within a metric drop of {max_metric_drop}")
        elif row["status"] != "ok":
            why = f"rejected: {row['status']}"
        elif name not in ok.index:
            why = f"rejected: metric drop {row['metric_drop']:+.4f} exceeds budget {max_metric_drop}"
        else:
            fastest = float(ok[objective].astype(float).min())
            why = f"slower: {objective} {row[objective]:.1f}{unit} vs {fastest:.1f}{unit}"
        reasons.append(str(name) + ": " + why)
    return Selection(best, reasons, objective, max_metric_drop, report)


def attach(bundle: ModelBundle, variant: str | Selection, *, report: QuantReport | None = None,
           calibration: Any = None, threads: int = 1, inter_threads: int = 1) -> ModelBundle:
    """A copy of ``bundle`` that predicts with ``variant`` (what ``ModelBundle.with_runtime`` does).

    Args:
        bundle: The source bundle (unchanged).
        variant: A variant name or a :class:`Selection`.
        report: The report the graph comes from (taken from the selection when given); without
            one, the graph is built now.
        calibration: Raw training rows, when building ``ort-int8-static`` without a report.
        threads: Intra-op threads stored in the runtime options (serving default 1).
        inter_threads: Inter-op threads stored in the runtime options.

    Returns:
        The new bundle; ``runtime_info`` names the runtime, variant, artifact and its sha256, and
        ``sections["quantization"]`` holds the report summary and the choice.
    """
    reasons = ["chosen by name"]
    if isinstance(variant, Selection):
        selection, report = variant, variant.report
        name, reasons = selection.variant, selection.reasons
    else:
        selection, name = None, check_variants([variant])[0]
    spec = VARIANTS[name]
    clone = bundle.copy()
    clone.artifacts = {k: v for k, v in clone.artifacts.items() if not (k.startswith("model.") and k.endswith(".onnx"))}
    if spec.runtime == "torch":
        clone.runtime_info = {"name": "torch", "variant": "fp32"}
    else:
        data = report.artifacts.get(name) if report is not None else None
        if data is None:
            graph, _ = export_onnx(bundle)
            calib = _calibration_matrix(bundle, calibration) if name == "ort-int8-static" else None
            data = quantize_graph(graph, name, calib)
        assert spec.artifact is not None
        clone.artifacts[spec.artifact] = data
        clone.runtime_info = {"name": "onnxruntime", "variant": name, "artifact": spec.artifact,
                              "sha256": hashlib.sha256(data).hexdigest(),
                              "options": {"threads": threads, "inter_threads": inter_threads}}
    section: dict[str, Any] = {"chosen": name, "reasons": reasons, "runtime": dict(clone.runtime_info)}
    if selection is not None:
        section.update(max_metric_drop=selection.max_metric_drop, objective=selection.objective)
    if report is not None:
        section.update(report.summary())
        if name in report.frame.index:
            section["chosen_row"] = {k: _plain(v) for k, v in report.frame.loc[name].to_dict().items()}
    clone = clone.with_section("quantization", section)
    clone.runtime.run(np.ascontiguousarray(clone.transform(clone.example(2))))  # fails now, not in serving
    return clone


# -- CLI ---------------------------------------------------------------------------------------------
def evaluation_rows(bundle: ModelBundle) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Reload the bundle's dataset and re-split it with the training seed.

    Returns:
        Test rows, their raw targets, and the training rows (for calibration).

    Raises:
        ConfigError: If the bundle has no data config.
        DataError: If the data changed since training (hash differs).
    """
    from kit.config import DataConfig
    from kit.data import load

    if "data" not in bundle.configs:
        raise ConfigError("the bundle has no data config (configs['data']); call kit.quantize.compare "
                          "with your own evaluation rows", field="configs.data")
    config = DataConfig.from_dict(bundle.configs["data"])
    dataset = load(config)
    recorded = bundle.lineage.get("data_hash")
    if recorded and recorded != dataset.data_hash:
        raise DataError(f"dataset {config.source!r} changed since training (data hash differs), so the test "
                        "split is not the one the model was evaluated on", field="source")
    splits = dataset.split(config.valid_size, config.test_size, config.seed)
    return splits.test.X, dataset.decode_target(splits.test.y), splits.train.X


def cmd_quantize(args: argparse.Namespace) -> int:
    """Compare variants, print the table and the choice, write the new bundle."""
    from kit.bundle import ModelBundle

    bundle = ModelBundle.load(args.bundle)
    X, y, train_X = evaluation_rows(bundle)
    variants = check_variants(args.variants.split(",")) if args.variants else None
    report = compare(bundle, X, y, variants, calibration=train_X, threads=args.threads, repeats=args.repeats)
    print(report.table())
    choice = select(report, args.budget, args.objective)
    print(choice)
    out = bundle.with_runtime(choice, threads=args.threads).save(args.out)
    if args.plot:
        report.plot().savefig(args.plot, dpi=120, bbox_inches="tight")
    print(f"bundle with runtime {choice.variant} saved to {out}")
    return 0


def register_cli(sub: Any) -> None:
    """Add ``quantize`` to the ``kit`` command."""
    p = sub.add_parser("quantize", help="compare fp32/int8/fp16 runtimes and pick one within a budget",
                       description="Measure every variant on the bundle's test split, choose the fastest within "
                                   "the metric budget, and write a bundle that uses it.")
    p.add_argument("--bundle", required=True, help="bundle directory to read")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--budget", type=float, default=0.005, help="largest accepted metric drop (0.005 = 0.5 point)")
    p.add_argument("--objective", default="p50_batch1", choices=OBJECTIVES)
    p.add_argument("--variants", help=f"comma separated, default all: {','.join(VARIANTS)}")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for measuring and serving")
    p.add_argument("--repeats", type=int, default=300, help="timed runs per batch size")
    p.add_argument("--plot", help="write the Pareto plot to this image file")
    p.set_defaults(func=cmd_quantize)
