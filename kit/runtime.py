"""Inference backends behind one small interface, chosen by name.

A runtime maps the preprocessed float32 matrix ``(n, n_in)`` to raw network outputs
``(n, n_out)`` (logits, or standardized values for regression). Everything before (input
checking, preprocessing) and after (softmax, labels, de-standardizing) lives in
:class:`kit.bundle.ModelBundle`, so every runtime shares one prediction path.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import ConfigError, require

if TYPE_CHECKING:
    from kit.bundle import ModelBundle


class Runtime(abc.ABC):
    """Base class of inference backends.

    Contract: :meth:`run` takes a C-contiguous float32 array of shape ``(n, n_in)`` and
    returns a float32 array of shape ``(n, n_out)``; it must be safe to call from one thread
    at a time and must not change the bundle.
    """

    name: str = "base"

    @abc.abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw network outputs for a preprocessed batch."""


class TorchRuntime(Runtime):
    """Eager PyTorch fp32 on CPU (or CUDA when ``device`` says so)."""

    name = "torch"

    def __init__(self, bundle: ModelBundle, device: str = "cpu", threads: int | None = None) -> None:
        torch = require("torch", "train")
        from kit import nets

        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = torch.device(device)
        self.module = nets.build(bundle.spec)
        state = {k: torch.from_numpy(np.array(v)) for k, v in bundle.weights.items()}
        self.module.load_state_dict(state)
        self.module.eval().to(self.device)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs of the eager module."""
        with self._torch.inference_mode():
            out = self.module(self._torch.from_numpy(x).to(self.device))
        result: np.ndarray = out.float().cpu().numpy()
        return result


RUNTIMES: dict[str, type[Runtime]] = {"torch": TorchRuntime}


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
    return RUNTIMES[runtime](bundle, **options)
