"""Turn a verified fp32 ONNX graph into a variant's graph: fp32 fused, int8 dynamic/static, fp16."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import DataError, require
from kit.quantize._export import _load_onnx, _quiet, compact
from kit.quantize._variants import check_variants

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

MIN_CALIBRATION = 32
"""Fewest calibration rows accepted for static int8."""


def _calibration_matrix(bundle: ModelBundle, calibration: Any) -> np.ndarray:
    if calibration is None:
        raise DataError("ort-int8-static needs calibration rows (pass the training split as calibration=)",
                        field="calibration")
    x = np.ascontiguousarray(bundle.transform(calibration))
    if len(x) < MIN_CALIBRATION:
        raise DataError(f"calibration set too small for ort-int8-static: {len(x)} rows, need at least "
                        f"{MIN_CALIBRATION} (use the training split)", field="calibration")
    return x


CALIBRATE_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
"""Static int8 calibration methods by kit name: ONNX Runtime's ``CalibrationMethod`` members."""


def quantize_graph(fp32: bytes, variant: str, calibration: np.ndarray | None = None, *, method: str = "minmax",
                   per_channel: bool = True, exclude: tuple[str, ...] = ()) -> bytes:
    """Turn a verified fp32 ONNX graph into the named variant's graph.

    Args:
        fp32: The serialized fp32 graph from :func:`export_onnx`.
        variant: ``ort-fp32``, ``ort-int8-dynamic``, ``ort-int8-static`` or ``ort-fp16``.
        calibration: Preprocessed float32 rows (static int8 only).
        method: Static int8 activation ranges: ``minmax``, ``entropy`` or ``percentile`` (see
            :data:`CALIBRATE_METHODS`).
        per_channel: Static int8 weights with one scale per output channel (else one per tensor).
        exclude: Names of nodes left in fp32 (static int8; nodes of ``fp32`` by name).

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
            rows = calibration[:1024]
            # histogram calibrators stack every batch's values: one batch, so shapes agree
            step = 64 if method == "minmax" else len(rows)
            batches = iter([{"x": rows[i:i + step]} for i in range(0, len(rows), step)])

            class Reader(q.CalibrationDataReader):  # type: ignore[misc]
                def get_next(self) -> dict[str, np.ndarray] | None:
                    return next(batches, None)

            q.quantize_static(src, dst, Reader(), quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                              activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                              calibrate_method=getattr(q.CalibrationMethod, CALIBRATE_METHODS[method]),
                              nodes_to_exclude=list(exclude))
            if exclude:
                return _optimize(_float_inputs(dst.read_bytes(), set(exclude)))
        return _optimize(dst.read_bytes())


def _float_inputs(graph: bytes, exclude: set[str]) -> bytes:
    """Feed the nodes left in fp32 the float tensors, not their quantize-dequantize copies.

    Otherwise ONNX Runtime's graph optimizer sees ``DequantizeLinear -> Gemm`` with float weights and
    quantizes those weights after all (its weight-and-bias quantization pass), undoing the fallback.
    """
    model = _load_onnx(graph)
    producer = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.name not in exclude:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    data: bytes = model.SerializeToString()
    return data


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
