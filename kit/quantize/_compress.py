"""``compress()``: prune, distill and int8 a bundle's network, measure every candidate, choose under the budget.

Candidates are networks times runtime variants: the original network, each step of the pruning
schedule (:mod:`kit.quantize._prune`), each distilled student (:mod:`kit.quantize._distill`), each as
fp32 ONNX and as accuracy-aware static int8 (:mod:`kit.quantize._calibrate`); stacking follows from
that (a pruned network's int8 graph is prune -> int8). Every candidate is scored against the original
network in torch fp32 on the bundle's validation split, which is what the choice (and the static
int8 search) uses, and on its test split, which nothing is chosen on and so stays an unbiased report
of the chosen candidate. All are timed together in interleaved rounds
(:func:`~kit.quantize._compare._latencies`) so a busy spell of a shared machine hits every candidate alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.config import CompressConfig, QuantizeConfig
from kit.errors import KitError
from kit.quantize._calibrate import search_int8
from kit.quantize._compare import QuantReport, _latencies, _torch_threads
from kit.quantize._distill import distill
from kit.quantize._export import reference_graph
from kit.quantize._fit import Rows, parameter_count
from kit.quantize._frontier import REFERENCE, CompressReport, choose, describe_step
from kit.quantize._graph import quantize_graph
from kit.quantize._prune import prune
from kit.runtime import OnnxRuntime, Runtime, TorchRuntime

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

QUICK_REPEATS = 30
"""Timed runs per batch size for each int8 configuration the search tries (the final timing uses the config's)."""


@dataclass
class Compression:
    """What :func:`compress` returns.

    Attributes:
        report: Every candidate measured, the choice and its reasons.
        bundle: The chosen bundle: the smaller network with its runtime, the ``compression`` section
            and its lineage; the original bundle, unchanged, when nothing smaller meets the budget.
        reason: One line: what was chosen and why, or why the original stays.
    """

    report: CompressReport
    bundle: ModelBundle
    reason: str


class _Scorer:
    """Scores runtimes against the original network in torch fp32 on the validation and test rows.

    The validation rows give ``metric`` and ``metric_drop`` (what the choice uses), the test rows
    ``test_metric`` and ``test_metric_drop`` (reported only).
    """

    def __init__(self, bundle: ModelBundle, threads: int) -> None:
        from kit.metrics import HIGHER_IS_BETTER

        data = bundle.reload_data()
        decode = data.dataset.decode_target
        self.splits = {"": (data.splits.valid.X, decode(data.splits.valid.y)),
                       "test_": (data.splits.test.X, decode(data.splits.test.y))}
        self.X = data.splits.valid.X
        self.metric = bundle.primary_metric
        self.sign = 1.0 if HIGHER_IS_BETTER[self.metric] else -1.0
        self.threads = threads
        x = np.ascontiguousarray(bundle.transform(data.splits.test.X))
        self.batches = {1: np.ascontiguousarray(x[:1]), 64: np.ascontiguousarray(np.resize(x, (64, x.shape[1])))}
        self.reference = self.scores(bundle, TorchRuntime(bundle, threads=threads))

    def scores(self, bundle: ModelBundle, runtime: Runtime,
               splits: tuple[str, ...] = ("", "test_")) -> dict[str, float]:
        probe = bundle.copy().set_runtime(runtime)
        return {p: float(probe.evaluate(*self.splits[p])[self.metric]) for p in splits}

    def row(self, bundle: ModelBundle, runtime: Runtime, splits: tuple[str, ...] = ("", "test_")) -> dict[str, float]:
        out = {}
        for prefix, metric in self.scores(bundle, runtime, splits).items():
            out[f"{prefix}metric"] = metric
            out[f"{prefix}metric_drop"] = self.sign * (self.reference[prefix] - metric)
        return out

    def quick(self, bundle: ModelBundle, graph: bytes) -> dict[str, float]:
        runtime = OnnxRuntime(bundle, model=graph, threads=self.threads)
        timed = _latencies({"g": runtime}, self.batches, QUICK_REPEATS, 3, rounds=3)
        return {**self.row(bundle, runtime, ("",)), "p50_batch1": timed[("g", 1)][0],
                "p50_batch64": timed[("g", 64)][0]}


def compress(bundle: ModelBundle, config: CompressConfig | None = None, *,
             progress: Callable[[str], None] | None = None, should_stop: Callable[[], bool] | None = None,
             **fields: Any) -> Compression:
    """Search smaller networks and int8 graphs of ``bundle``'s network; choose the fastest within the budget.

    Args:
        bundle: A trained bundle whose network and data are available here (torch, the builder and
            :meth:`~kit.bundle.ModelBundle.reload_data`).
        config: Schedule, students, calibration search, budget, objective, timing (see
            :class:`~kit.config.CompressConfig`).
        progress: Told each stage as it starts (the panel shows it).
        should_stop: Polled between stages and epochs; ``True`` stops starting candidates, and what
            was built is measured and chosen from (the panel's Stop button). The config's
            ``time_budget`` stops the same way.
        **fields: Shorthands for ``config`` fields, e.g. ``compress(bundle, budget=0.01)``.

    Returns:
        The report (:class:`~kit.quantize.CompressReport`: table, JSON, frontier plot) and the chosen bundle.
    """
    config = CompressConfig.resolve(config, fields)
    started = time.monotonic()
    tell = progress or (lambda _: None)

    def stop() -> bool:
        late = config.time_budget is not None and time.monotonic() - started > config.time_budget
        return late or (should_stop is not None and should_stop())

    torch_threads = _torch_threads()
    try:
        tell("reading the training split and the original network's outputs")
        rows = Rows.of(bundle)
        scorer = _Scorer(bundle, config.threads)
        common: dict[str, Any] = {"temperature": config.temperature, "alpha": config.alpha, "seed": config.seed,
                  "should_stop": stop, "progress": tell}
        networks: dict[str, ModelBundle] = {"original": bundle}
        skipped: list[str] = []
        pruned, why = prune(bundle, rows, config.sparsities, epochs=config.finetune_epochs, **common)
        networks.update({f"pruned{round(s * 100)}": b for s, b in zip(config.sparsities, pruned, strict=False)})
        if why:
            skipped.append(f"pruning: {why}")
        students, problems = distill(bundle, rows, config.students, net=config.student_net,
                                     epochs=config.distill_epochs, **common)
        networks.update({f"student{i + 1}": b for i, b in enumerate(students)})
        skipped += [f"distillation: {p}" for p in problems]
        for i, student in enumerate(students if config.student_sparsities else []):  # stacked: distill, then prune
            if stop():
                break
            more, why = prune(student, rows, config.student_sparsities, epochs=config.finetune_epochs, **common)
            networks.update({f"student{i + 1}-pruned{round(s * 100)}": b
                             for s, b in zip(config.student_sparsities, more, strict=False)})
            if why:
                skipped.append(f"pruning student{i + 1}: {why}")
        frame, runtimes, artifacts, int8 = _candidates(networks, scorer, rows, config, stop, tell, skipped)
        tell("timing every candidate together")
        _time(frame, runtimes, scorer, config)
    finally:
        _torch_threads(torch_threads)
    sizes = frame["size_bytes"].astype(float)
    frame["size_ratio"] = sizes.get("original/ort-fp32", sizes[REFERENCE]) / sizes  # vs the original's fp32 graph
    chosen, reasons = choose(frame, config.budget, config.objective)
    settings = {"threads": config.threads, "repeats": config.repeats, "warmup": config.warmup,
                "rows": len(scorer.X), "test_rows": len(scorer.splits["test_"][0]),
                "chosen_on": "validation split (metric, metric_drop); test split reported (test_metric, "
                             "test_metric_drop), never chosen on", "seconds": round(time.monotonic() - started, 1),
                "loadavg": list(os.getloadavg()), "reference": REFERENCE,
                "latency": "runtime.run on preprocessed rows, microseconds, interleaved rounds"}
    report = CompressReport(frame, scorer.metric, bundle.task, chosen, reasons, config, int8, skipped, settings,
                            networks, artifacts)
    network, variant = chosen.split("/")
    if network == "original":
        reason = (f"no smaller network or int8 graph is within the budget {config.budget} and faster beyond the "
                  f"noise; the original stays ({chosen})")
        return Compression(report, bundle, reason)
    return Compression(report, _attach(networks[network], variant, report, chosen), reasons[list(frame.index)
                       .index(chosen)])


def _candidates(networks: dict[str, ModelBundle], scorer: _Scorer, rows: Rows, config: CompressConfig,
                stop: Callable[[], bool], tell: Callable[[str], None], skipped: list[str]
                ) -> tuple[pd.DataFrame, dict[str, Runtime], dict[str, bytes], dict[str, list[dict[str, Any]]]]:
    """Every network's torch (original only), fp32 ONNX and int8 rows, their runtimes and graphs."""
    records: dict[str, dict[str, Any]] = {}
    runtimes: dict[str, Runtime] = {}
    artifacts: dict[str, bytes] = {}
    int8: dict[str, list[dict[str, Any]]] = {}
    for network, net_bundle in networks.items():
        steps = net_bundle.lineage.get("compression", [])[len(networks["original"].lineage.get("compression", [])):]
        lineage = [networks["original"].net.describe(), *[describe_step(s) for s in steps]]

        def add(variant: str, runtime: Runtime, graph: bytes | None, shown: str, net: ModelBundle = net_bundle,
                network: str = network, lineage: list[str] = lineage, **extra: Any) -> None:
            name = REFERENCE if graph is None else f"{network}/{variant}"
            size = _safetensors_size(net) if graph is None else len(graph)
            records[name] = {"network": network, "runtime_variant": variant, "status": "ok", **scorer.row(net, runtime),
                             "size_bytes": size, "parameters": parameter_count(net), "batch_invariant": True,
                             "lineage": [*lineage, shown], **extra}
            runtimes[name] = runtime
            if graph is not None:
                artifacts[name] = graph

        if network == "original":
            add("torch-fp32", TorchRuntime(net_bundle, threads=config.threads), None, "torch-fp32")
        try:
            graph, _ = reference_graph(net_bundle)
        except KitError as exc:
            skipped.append(f"{network}: no ONNX graph: {exc.message}")
            continue
        tell(f"{network}: fp32 ONNX")
        fp32 = quantize_graph(graph, "ort-fp32")
        add("ort-fp32", OnnxRuntime(net_bundle, model=fp32, threads=config.threads), fp32, "ort-fp32")
        if not config.int8:
            continue
        if stop():
            skipped.append(f"{network}: int8 not tried (stopped)")
            continue
        tell(f"{network}: static int8 search")

        def measure(candidate: bytes, net: ModelBundle = net_bundle) -> dict[str, float]:
            return scorer.quick(net, candidate)

        found = search_int8(graph, rows.x_train, measure, budget=config.budget, methods=config.calibrations,
                            fallback_nodes=config.fallback_nodes, objective=config.objective, should_stop=stop)
        int8[network] = found.tried
        chosen = found.config
        shown = (f"ort-int8-static ({chosen['method']}, {'per-channel' if chosen['per_channel'] else 'per-tensor'} "
                 "weights" + (f", fp32 nodes {chosen['fp32_nodes']}" if chosen["fp32_nodes"] else "") + ")")
        add("ort-int8-static", OnnxRuntime(net_bundle, model=found.graph, threads=config.threads), found.graph, shown,
            int8=chosen)
    frame = pd.DataFrame.from_dict(records, orient="index")
    frame.index.name = "candidate"
    return frame, runtimes, artifacts, int8


def _safetensors_size(bundle: ModelBundle) -> int:
    from safetensors.numpy import save as st_save

    return len(st_save({k: np.ascontiguousarray(v) for k, v in bundle.weights.items()}))


def _time(frame: pd.DataFrame, runtimes: dict[str, Runtime], scorer: _Scorer, config: CompressConfig) -> None:
    """Every candidate's p50/p99 latency at batch 1 and 64 and their noise, timed together (in place)."""
    timed = _latencies(runtimes, scorer.batches, config.repeats, config.warmup)
    for size in (1, 64):
        for column in (f"p50_batch{size}", f"p99_batch{size}", f"p50_batch{size}_noise", f"p99_batch{size}_noise"):
            frame[column] = np.nan
    for name in runtimes:
        for size in (1, 64):
            p50, p99, n50, n99 = timed[(name, size)]
            frame.loc[name, [f"p50_batch{size}", f"p99_batch{size}", f"p50_batch{size}_noise",
                             f"p99_batch{size}_noise"]] = [p50, p99, n50, n99]


def _attach(network: ModelBundle, variant: str, report: CompressReport, chosen: str) -> ModelBundle:
    """The chosen network with the chosen runtime, the quantization and compression sections."""
    from kit.quantize._select import attach

    row = report.frame.loc[[chosen]].rename(index={chosen: variant})
    quant = QuantReport(row, report.metric, report.task, {variant: report.artifacts[chosen]},
                        dict(report.settings), {}, QuantizeConfig(variants=(variant,), budget=report.config.budget,
                                                                  threads=report.config.threads))
    out = attach(network, variant, report=quant, threads=report.config.threads)
    out = out.with_section("compression", report.to_json())
    out.configs["compress"] = report.config.to_dict()
    return out
