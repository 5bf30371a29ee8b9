"""Quantization and runtimes side by side: fp32 / int8 / fp16, pick the fastest within a budget.

Variants, by name (see :data:`VARIANTS`)::

    torch-fp32        eager PyTorch, the reference
    ort-fp32          the exported ONNX graph on ONNX Runtime
    ort-int8-dynamic  int8 weights, activations quantized on the fly
    ort-int8-static   int8 QDQ graph, activation ranges calibrated on training rows
    ort-fp16          fp16 weights and compute, fp32 inputs and outputs

Typical use::

    report = compare(bundle)                    # the bundle's own test split; QuantizeConfig fields as kwargs
    choice = select(report)                     # within the budget (default DEFAULT_BUDGET = 0.005)
    served = attach(bundle, choice)             # ONNX artifact + sha256 + QuantizationSection in the bundle
    latency_by_batch(bundle, report, X).plot()  # each variant's latency at batch sizes 1 ... 256

Export uses ``torch.onnx.export`` (the dynamo exporter, the TorchScript one as a fallback)
with a dynamic batch axis; a graph is accepted only when ONNX Runtime reproduces the torch
outputs within :data:`EXPORT_RTOL` / :data:`EXPORT_ATOL` at batch sizes 1, 5 and 64. Every saved
bundle carries that fp32 export (``network.onnx``, :func:`ensure_export`); the variants are built
from it (:func:`reference_graph`), so quantizing needs neither torch nor the network's builder,
and where torch fp32 cannot run the stored graph is the accuracy reference.
Latencies are of ``runtime.run`` on preprocessed rows (preprocessing is the same for every
variant), in microseconds, after a warm-up, with ``threads`` intra-op threads.

Smaller networks (#17)::

    result = compress(bundle)                   # prune, distill, accuracy-aware int8; CompressConfig fields as kwargs
    result.report.plot(); result.report.to_json()   # the frontier: metric drop vs latency (batch 1, 64) and size
    result.bundle                               # the chosen network and runtime (the original if none qualifies)

Modules: ``_variants`` (names), ``_export`` (torch -> verified ONNX), ``_graph`` (fp32 fused, int8,
fp16 graphs), ``_compare`` (measuring), ``_batches`` (latency by batch size), ``_select`` (choosing and attaching);
compression: ``_fit`` (the distillation loop), ``_prune`` (structured pruning of Linear chains), ``_distill``
(students), ``_calibrate`` (static int8 search), ``_frontier`` (the report), ``_compress`` (``compress()``).
"""

from __future__ import annotations

from kit.config import DEFAULT_BUDGET, CompressConfig, QuantizeConfig
from kit.quantize._batches import BATCH_SIZES, BatchLatency, latency_by_batch
from kit.quantize._compare import QuantReport, compare
from kit.quantize._compress import Compression, compress
from kit.quantize._export import (
    EXPORT_ATOL,
    EXPORT_RTOL,
    ONNX_ARTIFACT,
    ExportError,
    compact,
    ensure_export,
    export_onnx,
    reference_graph,
    stored_graph,
)
from kit.quantize._frontier import CompressReport
from kit.quantize._graph import CALIBRATE_METHODS, MIN_CALIBRATION, quantize_graph
from kit.quantize._select import Selection, attach, select
from kit.quantize._variants import BASELINE, OBJECTIVES, VARIANTS, Variant, check_variants

__all__ = ["BASELINE", "BATCH_SIZES", "CALIBRATE_METHODS", "DEFAULT_BUDGET", "EXPORT_ATOL", "EXPORT_RTOL",
           "MIN_CALIBRATION", "OBJECTIVES", "ONNX_ARTIFACT", "VARIANTS", "BatchLatency", "CompressConfig",
           "CompressReport", "Compression", "ExportError", "QuantReport", "QuantizeConfig", "Selection", "Variant",
           "attach", "check_variants", "compact", "compare", "compress", "ensure_export", "export_onnx",
           "latency_by_batch", "quantize_graph", "reference_graph", "select", "stored_graph"]
