"""Export a bundle's network to a verified fp32 ONNX graph, keep it in the bundle, serialize ONNX compactly.

Every saved bundle carries its fp32 export (``network.onnx``, recorded in ``spec["onnx"]`` with the
check against torch and the sha256 of the weights it was made from): :func:`ensure_export` makes it
at save time, and :func:`reference_graph` hands it to quantization, so the ONNX variants can be built
on a machine that has neither torch nor the network's builder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import BuilderError, DependencyError, IntegrityError, KitError, require
from kit.runtime import OnnxRuntime

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

EXPORT_RTOL = 1e-4
EXPORT_ATOL = 1e-4
ONNX_ARTIFACT = "network.onnx"
"""Bundle file of the fp32 ONNX export made at save time."""


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
        The serialized graph and what was checked (exporter, opset, the largest absolute difference
        from torch over the probe batches, the tolerances).

    Raises:
        ExportError: If no exporter yields a graph that matches torch within tolerance.
    """
    torch = require("torch", "train")
    module = bundle.module()
    rng = np.random.default_rng(0)
    probes = [rng.normal(size=(n, *bundle.net.shape)).astype(np.float32) for n in (1, 5, 64)]
    problems: list[str] = []
    for exporter in exporters:
        try:
            data = compact(_export_with(module, torch.from_numpy(probes[1]), exporter))
            runtime = OnnxRuntime(bundle, model=data)
        except Exception as exc:  # exporters raise many types; the reason is what matters
            first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc).strip()).splitlines()[0][:300] if str(exc).strip() else ""
            problems.append(f"{exporter}: {type(exc).__name__}: {first}")
            continue
        worst, largest = 0.0, 0.0
        with torch.inference_mode():
            for x in probes:
                ref = module(torch.from_numpy(x)).numpy()
                diff = np.abs(runtime.run(x) - ref)
                largest = max(largest, float(diff.max()))
                worst = max(worst, float((diff - EXPORT_RTOL * np.abs(ref)).max()))
        if worst <= EXPORT_ATOL:
            opset = max((o.version for o in _load_onnx(data).opset_import if o.domain in ("", "ai.onnx")), default=0)
            return data, {"exporter": exporter, "opset": opset, "max_abs_diff": largest,
                          "rtol": EXPORT_RTOL, "atol": EXPORT_ATOL, "batch_sizes_checked": [1, 5, 64]}
        problems.append(f"{exporter}: outputs differ from torch by {worst:.3g} (beyond rtol {EXPORT_RTOL} "
                        f"+ atol {EXPORT_ATOL})")
    raise ExportError(f"network {bundle.net.builder!r} cannot be exported to ONNX: " + "; ".join(problems),
                      field="net")


def _load_onnx(data: bytes) -> Any:
    import onnx

    return onnx.load_from_string(data)


def weights_sha256(bundle: ModelBundle) -> str:
    """sha256 over the bundle's weights (names, shapes, dtypes and values), to tie an export to them."""
    digest = hashlib.sha256()
    for name in sorted(bundle.weights):
        value = np.ascontiguousarray(bundle.weights[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def stored_graph(bundle: ModelBundle) -> tuple[bytes, dict[str, Any]] | None:
    """The fp32 export the bundle carries and its record, or ``None`` if it has none for these weights.

    Raises:
        IntegrityError: If the stored graph does not match the sha256 recorded with it.
    """
    info = bundle.spec.get("onnx")
    data = bundle.artifacts.get(ONNX_ARTIFACT)
    if not isinstance(info, dict) or "error" in info or data is None:
        return None
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise IntegrityError(f"{ONNX_ARTIFACT} does not match the sha256 recorded in the bundle's spec",
                             file=ONNX_ARTIFACT)
    if info.get("weights_sha256") != weights_sha256(bundle):
        return None
    return data, dict(info)


def ensure_export(bundle: ModelBundle) -> dict[str, Any] | None:
    """Give ``bundle`` its fp32 ONNX export (in place) unless it has one for its current weights.

    The graph goes to ``bundle.artifacts["network.onnx"]`` and the record to ``bundle.spec["onnx"]``:
    exporter, opset, largest difference from torch at batch sizes 1, 5 and 64, tolerances, the
    graph's and the weights' sha256, the time. A network that cannot be exported is recorded with
    the reason (``{"error": ...}``) and torch stays its runtime. Without torch, ONNX or the builder
    (a machine that only serves), nothing changes.

    Returns:
        The record, or ``None`` when no export could be attempted here.
    """
    weights = weights_sha256(bundle)
    info = bundle.spec.get("onnx")
    if isinstance(info, dict) and info.get("weights_sha256") == weights and (
            "error" in info or ONNX_ARTIFACT in bundle.artifacts):
        return info
    try:
        data, check = export_onnx(bundle)
    except ExportError as exc:
        bundle.artifacts.pop(ONNX_ARTIFACT, None)
        bundle.spec["onnx"] = {"error": exc.message, "weights_sha256": weights}
        return dict(bundle.spec["onnx"])
    except (BuilderError, DependencyError, ImportError):
        return info if isinstance(info, dict) else None
    bundle.artifacts[ONNX_ARTIFACT] = data
    bundle.spec["onnx"] = {"artifact": ONNX_ARTIFACT, "sha256": hashlib.sha256(data).hexdigest(),
                           "weights_sha256": weights, **check,
                           "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    return dict(bundle.spec["onnx"])


def reference_graph(bundle: ModelBundle) -> tuple[bytes, dict[str, Any]]:
    """The fp32 graph every ONNX variant is built from: the stored export, else a fresh one.

    Raises:
        ExportError: If the network cannot be exported (or its stored record says so).
        BuilderError: If there is no stored export and the builder is missing here.
    """
    stored = stored_graph(bundle)
    if stored is not None:
        return stored[0], {**stored[1], "source": "stored export (network.onnx)"}
    info = bundle.spec.get("onnx")
    if isinstance(info, dict) and "error" in info and info.get("weights_sha256") == weights_sha256(bundle):
        raise ExportError(info["error"], field="net")
    data, check = export_onnx(bundle)
    return data, {**check, "source": "exported now"}
