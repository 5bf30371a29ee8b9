"""The runtime variants kit can build and measure, by name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kit.config import QUANTIZE_OBJECTIVES as OBJECTIVES
from kit.errors import ConfigError

__all__ = ["BASELINE", "OBJECTIVES", "SIMPLEST", "VARIANTS", "Variant", "check_variants"]


@dataclass(frozen=True)
class Variant:
    """One way to run the network.

    Attributes:
        name: The variant's name, e.g. ``"ort-int8-dynamic"``.
        runtime: The runtime that serves it (``torch`` or ``onnxruntime``).
        precision: ``fp32``, ``int8`` or ``fp16``.
        tolerance: Largest accepted difference from torch fp32 on the test split: of class
            probabilities (classification) or of values in target standard deviations (regression).
        batch_invariant: Whether a row's output is the same whatever other rows share its batch
            (dynamic int8 quantizes activations with ranges measured per batch: it is not).
    """

    name: str
    runtime: str
    precision: str
    tolerance: float
    batch_invariant: bool = True

    @property
    def artifact(self) -> str | None:
        """File name of its ONNX graph in a bundle (``None`` for torch)."""
        return None if self.runtime == "torch" else f"model.{self.name}.onnx"


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("torch-fp32", "torch", "fp32", 0.0),
    Variant("ort-fp32", "onnxruntime", "fp32", 1e-4),
    Variant("ort-int8-dynamic", "onnxruntime", "int8", 0.05, batch_invariant=False),
    Variant("ort-int8-static", "onnxruntime", "int8", 0.08),
    Variant("ort-fp16", "onnxruntime", "fp16", 5e-3),
)}
"""Every variant kit knows, by name."""

BASELINE = "torch-fp32"

SIMPLEST: tuple[str, ...] = ("ort-fp32", "torch-fp32", "ort-fp16", "ort-int8-static", "ort-int8-dynamic")
"""Preference among variants whose speed differs by no more than the measurement noise: exact fp32
before approximations (fp16, then int8), batch-invariant outputs before batch-dependent ones
(dynamic int8), and ONNX Runtime before torch (it serves without torch)."""


def check_variants(names: Sequence[str]) -> list[str]:
    """Return ``names`` as a list, refusing an unknown variant with the known ones listed."""
    for name in names:
        if name not in VARIANTS:
            raise ConfigError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}", field="variants")
    return list(names)
