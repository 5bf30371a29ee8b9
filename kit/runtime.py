"""Inference backends behind one small interface, chosen by name.

A runtime maps the preprocessed float32 matrix ``(n, n_in)`` to raw network outputs
``(n, n_out)`` (logits, or standardized values for regression). Everything before (input
checking, preprocessing) and after (softmax, labels, de-standardizing) lives in
:class:`kit.bundle.ModelBundle`, so every runtime shares one prediction path.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import ConfigError, IntegrityError, require

if TYPE_CHECKING:
    from kit.bundle import ModelBundle


class Runtime(abc.ABC):
    """Base class of inference backends.

    Contract: :meth:`run` takes a C-contiguous float32 array of shape ``(n, n_in)`` and
    returns a float32 array of shape ``(n, n_out)``; it must be safe to call from one thread
    at a time and must not change the bundle.
    """

    name: str = "base"
    batch_invariant: bool = True
    """Whether a row's output is independent of the other rows in its batch. A dynamic-int8 graph
    quantizes activations with ranges taken from the whole batch, so its rows move slightly with
    their neighbours; fp32, fp16 and static-int8 graphs and eager torch do not depend on them."""

    @abc.abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw network outputs for a preprocessed batch."""

    def run_groups(self, x: np.ndarray, groups: Sequence[int]) -> np.ndarray:
        """Raw outputs for consecutive groups of rows that must not influence each other.

        One call for the whole batch when the runtime is :attr:`batch_invariant`, else one call per
        group, so each group's outputs equal ``run`` on that group alone.

        Raises:
            ConfigError: If the group sizes do not add up to the number of rows.
        """
        if sum(groups) != len(x) or (len(groups) and min(groups) < 0):
            raise ConfigError(f"group sizes {list(groups)[:10]} do not add up to the {len(x)} rows", field="groups")
        if self.batch_invariant or len(groups) <= 1 or not len(x):
            return self.run(x)
        bounds = itertools.pairwise(np.cumsum([0, *groups]))
        return np.concatenate([self.run(x[a:b]) for a, b in bounds if b > a])


class TorchRuntime(Runtime):
    """Eager PyTorch fp32 on CPU (or CUDA when ``device`` says so).

    The network is rebuilt by importing its builder (see :meth:`kit.bundle.ModelBundle.module`): a
    missing builder or a changed source is a :class:`~kit.errors.BuilderError` /
    :class:`~kit.errors.CodeChangedError`; ``allow_changed_code=True`` overrides the second.
    """

    name = "torch"

    def __init__(self, bundle: ModelBundle, device: str = "cpu", threads: int | None = None,
                 allow_changed_code: bool | None = None) -> None:
        torch = require("torch", "train")

        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = torch.device(device)
        self.module = bundle.module(str(self.device), allow_changed_code=allow_changed_code)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs of the eager module."""
        with self._torch.inference_mode():
            out = self.module(self._torch.from_numpy(x).to(self.device))
        result: np.ndarray = out.float().cpu().numpy()
        return result


class OnnxRuntime(Runtime):
    """ONNX Runtime on an ONNX graph stored in the bundle (fp32, int8 or fp16); never imports torch.

    Serving defaults favour batch-1 latency: one intra-op and one inter-op thread, sequential
    execution, all graph optimizations. Raise ``threads`` for large batches.

    Args:
        bundle: The bundle; the graph is ``bundle.artifacts[artifact]``.
        artifact: Artifact file name; defaults to ``bundle.runtime_info["artifact"]``.
        model: Serialized ONNX bytes to run instead of a bundle artifact (benchmarks).
        threads: Intra-op threads (``0`` lets ONNX Runtime decide).
        inter_threads: Inter-op threads.
        device: ``cpu``, ``cuda``, or ``auto`` (CUDA when the CUDA provider is installed).

    Raises:
        ConfigError: If no artifact is named or an option is invalid.
        IntegrityError: If the artifact is missing, its sha256 differs from ``runtime_info``, or
            it is not a readable ONNX graph.
    """

    name = "onnxruntime"

    def __init__(self, bundle: ModelBundle, artifact: str | None = None, model: bytes | None = None,
                 threads: int = 1, inter_threads: int = 1, device: str = "cpu") -> None:
        ort = require("onnxruntime", "quantize")
        if threads < 0 or inter_threads < 1:
            raise ConfigError(f"threads must be >= 0 and inter_threads >= 1, but got {threads=}, {inter_threads=}",
                              field="threads")
        if model is None:
            model = self._artifact(bundle, artifact)
        self.artifact = artifact or bundle.runtime_info.get("artifact")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = inter_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        available = ort.get_available_providers()
        if device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"device must be cpu, cuda or auto, but got {device=}", field="device")
        use_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available)
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise ConfigError("device='cuda' but onnxruntime has no CUDAExecutionProvider; install "
                              "onnxruntime-gpu", field="device")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(model, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise IntegrityError(f"ONNX graph {self.artifact!r} cannot be loaded: {exc}",
                                 file=self.artifact) from exc
        # a graph that quantizes activations on the fly (DynamicQuantizeLinear, or the fused
        # DynamicQuantizeMatMul the int8-dynamic variant holds) takes their ranges from the whole batch
        self.batch_invariant = b"DynamicQuantize" not in model
        self._input = self.session.get_inputs()[0].name
        self._outputs = [self.session.get_outputs()[0].name]
        # One RunOptions for every call: without it ONNX Runtime builds a default one per run,
        # about 1 us of a 8-15 us batch-1 call here.
        self._run_options = ort.RunOptions()

    @staticmethod
    def _artifact(bundle: ModelBundle, artifact: str | None) -> bytes:
        import hashlib

        name = artifact or bundle.runtime_info.get("artifact")
        if not name:
            raise ConfigError("the onnxruntime runtime needs an ONNX artifact; build one with "
                              "kit.quantize.apply(bundle, variant)", field="artifact")
        if name not in bundle.artifacts:
            raise IntegrityError(f"ONNX artifact {name!r} is not in the bundle; it has: "
                                 f"{', '.join(bundle.artifacts) or 'no artifacts'}", file=name)
        data = bundle.artifacts[name]
        expected = bundle.runtime_info.get("sha256") if name == bundle.runtime_info.get("artifact") else None
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            raise IntegrityError(f"ONNX artifact {name!r} does not match the sha256 recorded in the bundle's "
                                 "runtime", file=name)
        return data

    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs of the ONNX graph."""
        out = self.session.run(self._outputs, {self._input: x}, self._run_options)[0]
        result: np.ndarray = np.asarray(out, dtype=np.float32)
        return result


RUNTIMES: dict[str, type[Runtime]] = {"torch": TorchRuntime, "onnxruntime": OnnxRuntime}


def get_runtime(runtime: str | Runtime, bundle: ModelBundle, **options: Any) -> Runtime:
    """Return a runtime instance for ``bundle``.

    Args:
        runtime: A registered name (``"torch"``, ...) or an instance, returned as is.
        bundle: The bundle whose weights or artifacts the runtime serves.
        **options: Passed to the runtime's constructor (device, threads, ...).

    Raises:
        ConfigError: If the name is unknown.
    """
    if isinstance(runtime, Runtime):
        return runtime
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}", field="runtime")
    factory: Any = RUNTIMES[runtime]
    instance: Runtime = factory(bundle, **options)
    return instance
