"""``compare()``: build every variant and measure accuracy, latency and size on the same rows."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.config import QuantizeConfig
from kit.errors import BuilderError, DataError, DependencyError, require
from kit.quantize._export import ONNX_ARTIFACT, ExportError, reference_graph
from kit.quantize._graph import _calibration_matrix, quantize_graph
from kit.quantize._variants import BASELINE, VARIANTS, Variant, check_variants
from kit.runtime import OnnxRuntime, Runtime, TorchRuntime

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.bundle import ModelBundle


@dataclass
class QuantReport:
    """Per-variant results of :func:`compare` (``frame``) and the graphs that were measured.

    Attributes:
        frame: One row per variant (index): status, metric, metric_drop, label_agreement,
            max_abs_diff, within_tolerance, p50/p99 latency at batch 1 and 64 (µs), their noise
            (``<column>_noise``: interquartile range across the interleaved rounds), rows_per_s,
            size_bytes, size_ratio (fp32 safetensors / artifact), load_ms, batch_invariant.
        metric: The task metric compared (the bundle's primary metric).
        task: The bundle's task.
        artifacts: Serialized ONNX graph per ONNX variant that was built.
        settings: Threads, rows, repeats, calibration rows, what the latency measures.
        export: The ONNX export check (exporter, opset, largest difference) or its failure.
        config: The :class:`~kit.config.QuantizeConfig` it was measured with (its budget is what
            :func:`~kit.quantize.select` uses by default).
    """

    frame: pd.DataFrame
    metric: str
    task: str
    artifacts: dict[str, bytes] = field(default_factory=dict, repr=False)
    settings: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    config: QuantizeConfig = field(default_factory=QuantizeConfig)

    def variants(self) -> dict[str, dict[str, Any]]:
        """Every variant's numbers, JSON-able (NaN as ``None``)."""
        return {str(name): {str(k): _plain(v) for k, v in row.items()}
                for name, row in self.frame.to_dict("index").items()}

    def to_json(self, chosen: str | None = None) -> dict[str, Any]:
        """``{"chosen", "budget", "metric", "rows": [{"variant", "metric_drop", "p50_batch1_us", ..., "lineage"}]}``.

        The same shape as :meth:`kit.quantize.CompressReport.to_json` (``kit quantize --report``).
        """
        from kit.quantize._frontier import JSON_COLUMNS

        origin = str(self.settings.get("network", "the network"))
        rows = [{"variant": name, **{JSON_COLUMNS.get(k, k): v for k, v in values.items()},
                 "lineage": [origin, name]} for name, values in self.variants().items()]
        return {"chosen": chosen, "budget": float(self.config.budget), "metric": self.metric, "rows": rows,
                "settings": dict(self.settings)}

    def table(self) -> str:
        """The report as an aligned text table."""
        cols = ["status", "metric", "metric_drop", "label_agreement", "max_abs_diff", "p50_batch1",
                "p99_batch1", "p50_batch64", "p99_batch64", "rows_per_s", "size_bytes", "size_ratio", "load_ms"]
        shown = self.frame[[c for c in cols if c in self.frame.columns]].rename(columns={"metric": self.metric})
        return shown.to_string(float_format=lambda v: f"{v:.4g}")

    def __str__(self) -> str:
        return self.table()

    def summary(self) -> pd.DataFrame:
        """The columns a reader compares first, named with their units (what a notebook shows).

        Test metric and its drop versus torch fp32, the share of test rows labelled as torch fp32
        labels them (classifiers), p50/p99 latency of one row and p50 of 64 rows per call (µs),
        rows per second at batch 64, artifact size (KiB) and how many times smaller than fp32.
        """
        f = self.frame
        out = pd.DataFrame(index=f.index)
        out["status"] = f["status"]
        if "metric" in f.columns:
            out[f"test {self.metric}"] = f["metric"]
            out["drop vs torch-fp32"] = f["metric_drop"]
            if self.task != "regression":
                out["same label as fp32"] = f["label_agreement"]
        for column, label in (("p50_batch1", "p50 batch 1 (µs)"), ("p99_batch1", "p99 batch 1 (µs)"),
                              ("p50_batch64", "p50 batch 64 (µs)"), ("rows_per_s", "rows/s at batch 64")):
            if column in f.columns:
                out[label] = f[column].round().astype("Int64") if column == "rows_per_s" else f[column]
        if "size_bytes" in f.columns:
            out["size (KiB)"] = f["size_bytes"] / 1024
            out["x smaller than fp32"] = f["size_ratio"]
        return out

    def _repr_html_(self) -> str:
        html: str = self.frame.to_html(float_format=lambda v: f"{v:.4g}")
        return html

    def plot(self, ax: Any = None) -> Figure:
        """Pareto plot: p50 batch-1 latency vs metric, marker area proportional to artifact size."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4)) if ax is None else ax.figure
        ax = ax or fig.add_subplot()
        ok = self.frame[self.frame["status"] == "ok"]
        biggest = max(float(ok["size_bytes"].max()), 1.0)
        markers = "osD^v<>"
        for i, (name, row) in enumerate(ok.iterrows()):  # a legend, not labels beside points that may overlap
            ax.scatter([row["p50_batch1"]], [row["metric"]], s=[40 + 400 * float(row["size_bytes"]) / biggest],
                       alpha=0.6, marker=markers[i % 7], label=str(name))
            if "p50_batch1_noise" in row and row["p50_batch1_noise"] == row["p50_batch1_noise"]:
                ax.errorbar([row["p50_batch1"]], [row["metric"]], xerr=[row["p50_batch1_noise"] / 2], fmt="none",
                            ecolor="grey", lw=0.8)
        ax.legend(fontsize=8, loc="best", markerscale=0.6)
        front = _pareto(ok)
        ax.plot(front["p50_batch1"], front["metric"], "--", color="grey", lw=1)
        ax.set_xlabel("p50 latency at batch 1 (µs)")
        ax.set_ylabel(f"{self.metric} (test)")
        ax.set_title("variants: latency vs metric (marker area = size, bar = noise)", fontsize=9)
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
               rounds: int = 10) -> dict[tuple[str, int], tuple[float, float, float, float]]:
    """p50 and p99 of ``runtime.run`` in microseconds per (variant, batch size), and their noise.

    The runtimes take turns: ``rounds`` rounds, each timing every runtime and batch size for
    ``repeats / rounds`` runs, so a slow spell of a shared machine hits every variant alike
    instead of whichever happened to be measured then. The noise of a percentile is the
    interquartile range of that percentile across the rounds: how much the same measurement
    moves within this run (what :func:`~kit.quantize.select` needs to tell a real difference).
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
        per_round = [(np.percentile(p / 1e3, 50), np.percentile(p / 1e3, 99)) for p in parts if len(p)]
        noise = [float(np.subtract(*np.percentile([r[i] for r in per_round], [75, 25]))) for i in (0, 1)]
        out[key] = (float(np.percentile(times, 50)), float(np.percentile(times, 99)), noise[0], noise[1])
    return out


def compare(bundle: ModelBundle, X: Any = None, y: Any = None, config: QuantizeConfig | None = None, *,
            calibration: Any = None, **fields: Any) -> QuantReport:
    """Build and measure variants side by side on rows ``X`` with raw targets ``y``.

    Args:
        bundle: A trained bundle (its weights are the fp32 reference).
        X: Evaluation rows, raw features; ``None``: the bundle's own test split (and its training
            split as calibration rows), see :meth:`~kit.bundle.ModelBundle.reload_data`.
        y: Their raw labels or values (with ``X``).
        config: Variants, budget, objective, threads, repeats, warm-up (see
            :class:`~kit.config.QuantizeConfig`). ``torch-fp32`` is always measured as the reference;
            by default every variant, static int8 only with calibration rows. Where torch-fp32
            cannot run (no torch, or the network's builder is missing or changed), its row says
            why and the bundle's stored fp32 ONNX graph is the reference (``settings["reference"]``).
        calibration: Raw training rows for static int8 (at least :data:`MIN_CALIBRATION`).
        **fields: Shorthands for ``config`` fields, e.g. ``compare(bundle, variants=["ort-fp32"])``.

    Returns:
        The report; ONNX variants the network cannot produce carry status ``failed: <reason>``.
        Every ONNX variant is built from the bundle's stored fp32 export (exported now if it has none).
        Timed runs are taken in 10 interleaved rounds so every variant sees the same machine.

    Raises:
        ConfigError: Unknown variant or bad settings.
        DataError: Static int8 with a missing or too small calibration set, or no rows.
    """
    from safetensors.numpy import save as st_save

    config = QuantizeConfig.resolve(config, fields)
    if X is None:
        data = bundle.reload_data()
        X, y = data.splits.test.X, data.dataset.decode_target(data.splits.test.y)
        calibration = data.splits.train.X if calibration is None else calibration
    elif y is None:
        raise DataError("compare needs the raw targets y of the rows X", field="y")
    variants = config.variants
    if variants is None:
        variants = tuple(v for v in VARIANTS if v != "ort-int8-static" or calibration is not None)
    names = check_variants([BASELINE, *[v for v in variants if v != BASELINE]])
    threads, repeats, warmup = config.threads, config.repeats, config.warmup
    calib = _calibration_matrix(bundle, calibration) if "ort-int8-static" in names else None
    x = np.ascontiguousarray(bundle.transform(X))
    if len(x) == 0:
        raise DataError("compare needs at least one evaluation row", field="X")
    batches = {1: np.ascontiguousarray(x[:1]), 64: np.ascontiguousarray(np.resize(x, (64, *x.shape[1:])))}
    fp32_size = len(st_save({k: np.ascontiguousarray(v) for k, v in bundle.weights.items()}))
    settings: dict[str, Any] = {"threads": threads, "rows": len(x), "repeats": repeats, "warmup": warmup,
                                "calibration_rows": None if calib is None else len(calib),
                                "latency": "runtime.run on preprocessed rows, microseconds",
                                "fp32_safetensors_bytes": fp32_size, "reference": BASELINE,
                                "network": bundle.net.describe()}
    artifacts: dict[str, bytes] = {}
    failure: str | None = None
    export: dict[str, Any] = {}
    fp32_graph = b""
    try:
        fp32_graph, export = reference_graph(bundle)
    except (ExportError, BuilderError, DependencyError) as exc:
        failure, export = exc.message, {"error": exc.message}
    probe = bundle.copy()
    rows: dict[str, dict[str, Any]] = {}
    runtimes: dict[str, Runtime] = {}
    sizes: dict[str, dict[str, float]] = {}
    torch_threads = _torch_threads()
    try:
        baseline, baseline_ms, why = _torch_baseline(bundle, threads)
        reference: Any = None
        if baseline is None:  # torch or the builder is missing here: the stored fp32 graph is the reference
            if failure is not None:
                raise DependencyError(f"nothing to compare against: torch-fp32 could not run ({why}) and the "
                                      f"bundle has no fp32 ONNX export ({failure})", field="runtime")
            probe.set_runtime(OnnxRuntime(bundle, model=fp32_graph, threads=threads))
            reference = (probe.infer(X), probe.evaluate(X, y)[bundle.primary_metric])
            rows[BASELINE] = {"runtime": "torch", "precision": "fp32", "status": f"failed: torch-fp32 could not run: "
                              f"{why}; the reference is the stored fp32 ONNX graph"}
            settings["reference"] = f"stored fp32 ONNX graph ({ONNX_ARTIFACT}); torch-fp32 could not run: {why}"
        for name in names:
            variant = VARIANTS[name]
            if variant.runtime == "torch" and baseline is None:
                continue
            if variant.runtime == "onnxruntime":
                if failure is not None:
                    rows[name] = {"status": f"failed: {failure}"}
                    continue
                artifacts[name] = quantize_graph(fp32_graph, name, calib)
            start = time.perf_counter()
            runtime: Runtime = (baseline if variant.runtime == "torch" and baseline is not None
                                else OnnxRuntime(bundle, model=artifacts[name], threads=threads))
            load_ms = baseline_ms if runtime is baseline else (time.perf_counter() - start) * 1e3
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
            (p50_1, p99_1, n50_1, n99_1), (p50_64, p99_64, n50_64, n99_64) = timed[(name, 1)], timed[(name, 64)]
            rows[name].update(p50_batch1=p50_1, p99_batch1=p99_1, p50_batch64=p50_64, p99_batch64=p99_64,
                              rows_per_s=64 / (p50_64 / 1e6), **sizes[name], p50_batch1_noise=n50_1,
                              p99_batch1_noise=n99_1, p50_batch64_noise=n50_64, p99_batch64_noise=n99_64,
                              batch_invariant=VARIANTS[name].batch_invariant)
    finally:
        _torch_threads(torch_threads)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "variant"
    return QuantReport(frame, bundle.primary_metric, bundle.task, artifacts, settings, export,
                       config.replace(variants=tuple(names)))


def _torch_threads(restore: int | None = None) -> int | None:
    """The intra-op thread count of torch (set it back with ``restore``); ``None`` without torch."""
    try:
        torch = require("torch", "train")
    except DependencyError:
        return None
    if restore is not None:
        torch.set_num_threads(restore)
    threads: int = torch.get_num_threads()
    return threads


def _torch_baseline(bundle: ModelBundle, threads: int) -> tuple[Runtime | None, float, str]:
    """The torch-fp32 runtime and its load time in ms, or ``None`` and why it cannot run here."""
    start = time.perf_counter()
    try:
        runtime = TorchRuntime(bundle, threads=threads)
    except (BuilderError, DependencyError) as exc:
        return None, 0.0, exc.message
    return runtime, (time.perf_counter() - start) * 1e3, ""


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
