"""Export a bundle's network to a verified fp32 ONNX graph, and serialize ONNX compactly."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import KitError, require
from kit.runtime import OnnxRuntime

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

EXPORT_RTOL = 1e-4
EXPORT_ATOL = 1e-4


class ExportError(KitError):
    """The network cannot be exported to a faithful ONNX graph (torch stays the runtime)."""


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
    module = bundle.module()
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
