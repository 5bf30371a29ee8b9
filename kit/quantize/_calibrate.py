"""Accuracy-aware static int8: search calibration method and weight granularity, fall back to fp32 per node.

Every configuration tried is kept with its metric drop and latency (:class:`Int8Search`), so a reader
sees what the search weighed. The order:

1. every calibration method (``minmax``, ``entropy``, ``percentile``) with per-channel and per-tensor
   weights; the fastest (``objective``, a short measurement) within the budget wins, else the smallest drop;
2. if the winner is over the budget, matrix-multiply nodes go back to fp32 one at a time (greedy: the
   node whose fp32 fallback alone recovers the most), at most ``fallback_nodes`` of them.

Static int8 (QDQ) graphs are batch-invariant: activation ranges are fixed at calibration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kit.quantize._export import _load_onnx
from kit.quantize._graph import quantize_graph

WEIGHTED = ("MatMul", "Gemm")
"""Node types whose fp32 fallback the search tries."""


@dataclass
class Int8Search:
    """The accuracy-aware int8 graph of one network and every configuration tried.

    Attributes:
        graph: The chosen serialized graph.
        config: Its configuration: ``method``, ``per_channel``, ``fp32_nodes``.
        metric_drop: Its metric drop versus the original network.
        tried: One entry per configuration: the configuration, metric, metric drop, p50 latency at
            batch 1 and 64 (µs, a short measurement) and whether it was chosen.
    """

    graph: bytes
    config: dict[str, Any]
    metric_drop: float
    tried: list[dict[str, Any]] = field(default_factory=list)


def named(fp32: bytes) -> tuple[bytes, list[str]]:
    """``fp32`` with every node named (``n0``, ``n1``, ...) and the names of its weighted nodes, in order."""
    model = _load_onnx(fp32)
    weighted = []
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i}"
        if node.op_type in WEIGHTED:
            weighted.append(node.name)
    data: bytes = model.SerializeToString()
    return data, weighted


def search_int8(fp32: bytes, calibration: np.ndarray, measure: Callable[[bytes], dict[str, float]], *,
                budget: float, methods: tuple[str, ...], fallback_nodes: int, objective: str = "p50_batch64",
                should_stop: Callable[[], bool] = lambda: False) -> Int8Search:
    """The best static int8 graph of ``fp32`` within ``budget``, or the closest to it.

    Args:
        fp32: The network's fp32 graph.
        calibration: Preprocessed training rows.
        measure: Scores a graph: ``metric``, ``metric_drop`` (versus the original network, positive =
            worse), ``p50_batch1``, ``p50_batch64``.
        budget: Largest accepted metric drop.
        methods: Calibration methods to try.
        fallback_nodes: Most nodes returned to fp32.
        objective: The latency that decides between configurations within the budget (``p50_batch1``
            or ``p50_batch64``; per-tensor weights are often faster at batch 1).
        should_stop: Polled between configurations.
    """
    graph, weighted = named(fp32)
    tried: list[dict[str, Any]] = []
    built: dict[int, bytes] = {}

    def attempt(method: str, per_channel: bool, exclude: tuple[str, ...]) -> dict[str, Any]:
        data = quantize_graph(graph, "ort-int8-static", calibration, method=method, per_channel=per_channel,
                              exclude=exclude)
        entry = {"method": method, "per_channel": per_channel, "fp32_nodes": list(exclude), **measure(data),
                 "chosen": False}
        built[len(tried)] = data
        tried.append(entry)
        return entry

    for method in methods:
        for per_channel in (True, False):
            if tried and should_stop():
                break
            attempt(method, per_channel, ())
    best = _best(tried, budget, objective)
    left = list(weighted)
    while tried[best]["metric_drop"] > budget + 1e-12 and len(tried[best]["fp32_nodes"]) < fallback_nodes and left:
        if should_stop():
            break
        base = tried[best]
        trials = [attempt(base["method"], base["per_channel"], (*base["fp32_nodes"], node)) for node in left]
        step = min(range(len(trials)), key=lambda i: trials[i]["metric_drop"])  # one node back to fp32: the best
        if trials[step]["metric_drop"] >= base["metric_drop"]:
            break
        best = tried.index(trials[step])
        left.remove(trials[step]["fp32_nodes"][-1])
    tried[best]["chosen"] = True
    chosen = tried[best]
    return Int8Search(built[best], {k: chosen[k] for k in ("method", "per_channel", "fp32_nodes")},
                      float(chosen["metric_drop"]), tried)



def _best(tried: list[dict[str, Any]], budget: float, objective: str) -> int:
    """The fastest within budget (ties to the smaller drop), else the smallest drop (ties to the faster)."""
    column = objective if objective in ("p50_batch1", "p50_batch64") else "p50_batch64"
    within = [i for i, t in enumerate(tried) if t["metric_drop"] <= budget + 1e-12]
    if within:
        return min(within, key=lambda i: (tried[i][column], tried[i]["metric_drop"]))
    return min(range(len(tried)), key=lambda i: (tried[i]["metric_drop"], tried[i][column]))
