"""The raw network outputs behind :meth:`kit.bundle.ModelBundle.infer`, in bounded chunks for images.

A table's rows are preprocessed into one float32 matrix (a few hundred bytes a row) and run in one
call. An image's rows are not that small: decoded and normalized, a row is ``channels x height x
width`` float32 values, and a conv net's activations are many times that, so scoring thousands of
images in one call would hold all of them at once. Image rows are therefore decoded, normalized and
run :func:`chunk_rows` at a time (at most :data:`CHUNK_ROWS` rows and :data:`CHUNK_BYTES` of network
input), and only the raw outputs (``n x n_out``) are kept. The answers equal one call: a
:attr:`~kit.runtime.Runtime.batch_invariant` runtime (torch, ONNX fp32, fp16, static int8) gives each
row the same output whatever else is in its batch. A runtime whose rows move with their neighbours
(dynamic int8 quantizes activations with the whole batch's range) runs each group of rows (the whole
input, or each request of a merged batch) in one call, as before: identical answers come first, so
its memory grows with the group (the batch scorer and the service pass bounded groups anyway).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import ConfigError

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

CHUNK_ROWS = 1024
"""Most image rows decoded and run in one call."""
CHUNK_BYTES = 64 << 20
"""Most bytes of float32 network input per call (64 MiB: 21 rows of 3x512x512)."""


def chunk_rows(input_shape: Sequence[int]) -> int:
    """Image rows per call for an input of ``input_shape`` (channels, height, width): at least one."""
    row_bytes = 4 * int(np.prod(input_shape))
    return max(1, min(CHUNK_ROWS, CHUNK_BYTES // row_bytes))


def raw_outputs(bundle: ModelBundle, X: Any, groups: Sequence[int] | None = None) -> np.ndarray:
    """The network's raw outputs for rows ``X`` (see the module docstring), float32 ``(n, n_out)``.

    Raises:
        SchemaError: If the rows do not match the schema (names the column and row, counted from 0
            over the whole input).
        ConfigError: If ``groups`` do not add up to the rows.
    """
    runtime = bundle.runtime
    if bundle.kind != "image":
        x = np.ascontiguousarray(bundle.transform(X))
        if not len(x):
            return np.zeros((0, bundle.spec["n_out"]), dtype=np.float32)
        return runtime.run(x) if groups is None else runtime.run_groups(x, groups)
    pre: Any = bundle.preprocessor
    values = pre.values(X)
    n = len(values)
    if groups is not None and (sum(groups) != n or any(g < 0 for g in groups)):
        raise ConfigError(f"group sizes {list(groups)[:10]} do not add up to the {n} rows", field="groups")
    outputs = [np.zeros((0, bundle.spec["n_out"]), dtype=np.float32)]
    for start, stop in _spans(n, groups, chunk_rows(pre.input_shape), runtime.batch_invariant):
        x = pre.normalize(pre.decode_values(values[start:stop], first=start))
        outputs.append(runtime.run(x))
    return np.concatenate(outputs)


def _spans(n: int, groups: Sequence[int] | None, size: int, invariant: bool) -> Iterator[tuple[int, int]]:
    """Row ranges run in one call each: fixed chunks, or (a batch-dependent runtime) one per group."""
    if invariant:
        yield from ((start, min(start + size, n)) for start in range(0, n, size))
        return
    start = 0
    for group in groups if groups is not None else [n]:
        if group:
            yield start, start + group
        start += group
