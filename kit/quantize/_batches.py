"""``latency_by_batch()``: how each variant's latency grows with the batch size.

:func:`~kit.quantize.compare` times batch 1 (one request) and batch 64; this times the variants it
built at more sizes, in the same way, to show where batching pays off (the service's adaptive
batcher groups concurrent requests into such batches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.errors import DataError, require
from kit.quantize._compare import QuantReport, _latencies
from kit.quantize._variants import VARIANTS
from kit.runtime import OnnxRuntime, Runtime, TorchRuntime

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.bundle import ModelBundle

BATCH_SIZES = (1, 4, 16, 64, 256)
"""Batch sizes :func:`latency_by_batch` times by default."""


@dataclass
class BatchLatency:
    """Latency of each variant at several batch sizes.

    Attributes:
        frame: One row per variant and batch size: ``variant``, ``batch``, ``p50_us`` and ``p99_us``
            (microseconds per call of ``runtime.run`` on preprocessed rows), ``us_per_row`` (p50 / batch)
            and ``rows_per_s``.
        settings: Threads, repeats and warm-up runs used (the report's).
    """

    frame: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    def plot(self) -> Figure:
        """Two panels against batch size (log scales): p50 latency per call, and rows per second."""
        from matplotlib.figure import Figure
        from matplotlib.ticker import NullLocator

        fig = Figure(figsize=(11, 3.8), layout="constrained")
        per_call, throughput = fig.subplots(1, 2)
        for name, rows in self.frame.groupby("variant", sort=False):
            per_call.plot(rows["batch"], rows["p50_us"], marker="o", label=str(name))
            throughput.plot(rows["batch"], rows["rows_per_s"], marker="o", label=str(name))
        sizes = sorted(int(b) for b in self.frame["batch"].unique())
        for ax in (per_call, throughput):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, labels=[str(b) for b in sizes])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_yscale("log")
            ax.set_xlabel("batch size (rows per call)")
            ax.legend(fontsize=8)
        per_call.set(ylabel="p50 latency per call (µs)", title="latency of one call")
        throughput.set(ylabel="rows per second (p50)", title="throughput")
        return fig


def latency_by_batch(bundle: ModelBundle, report: QuantReport, X: Any, batch_sizes: Sequence[int] = BATCH_SIZES
                     ) -> BatchLatency:
    """Time every variant that ``report`` measured successfully at each batch size.

    The timing is :func:`~kit.quantize.compare`'s: ``runtime.run`` on preprocessed rows, after the
    report's warm-up runs, with its threads and repeats, the variants taking turns in interleaved
    rounds so a busy spell of a shared machine hits all of them alike.

    Args:
        bundle: The bundle ``report`` was measured on (its weights run the torch variant).
        report: From :func:`~kit.quantize.compare`; its ONNX graphs are reused, not rebuilt.
        X: Raw rows, repeated to fill the largest batch.
        batch_sizes: Rows per call.

    Returns:
        The latencies, with a :meth:`~BatchLatency.plot`.

    Raises:
        DataError: If ``X`` has no rows or a batch size is below 1.
    """
    torch = require("torch", "train")
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise DataError(f"batch sizes must be >= 1, but got {list(batch_sizes)}", field="batch_sizes")
    x = np.ascontiguousarray(bundle.transform(X))
    if len(x) == 0:
        raise DataError("latency_by_batch needs at least one row", field="X")
    config = report.config
    batches = {b: np.ascontiguousarray(np.resize(x, (b, *x.shape[1:]))) for b in sizes}
    ok = [str(n) for n in report.frame.index if report.frame.loc[n, "status"] == "ok"]
    saved_threads = torch.get_num_threads()
    try:
        runtimes: dict[str, Runtime] = {
            name: TorchRuntime(bundle, threads=config.threads) if VARIANTS[name].runtime == "torch"
            else OnnxRuntime(bundle, model=report.artifacts[name], threads=config.threads)
            for name in ok if VARIANTS[name].runtime == "torch" or name in report.artifacts}
        timed = _latencies(runtimes, batches, config.repeats, config.warmup)
    finally:
        torch.set_num_threads(saved_threads)
    rows = [{"variant": name, "batch": b, "p50_us": timed[(name, b)][0], "p99_us": timed[(name, b)][1],
             "us_per_row": timed[(name, b)][0] / b, "rows_per_s": b / (timed[(name, b)][0] / 1e6)}
            for name in runtimes for b in sizes]
    return BatchLatency(pd.DataFrame(rows), {"threads": config.threads, "repeats": config.repeats,
                                             "warmup": config.warmup})
