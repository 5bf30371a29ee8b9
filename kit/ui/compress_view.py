"""The Quantize panel's "search smaller networks" part: :func:`kit.quantize.compress` with progress and Stop.

It prunes, distills and int8-quantizes the current model, shows every candidate (the frontier table
and plot, metric drop against latency and size) and makes the chosen bundle current, so the Gate and
Package steps take the smaller network. Stop ends the search at its next check; what was built by
then is measured and chosen from.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.ui._base import LAYOUT, STYLE, Panel

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.quantize import Compression


class CompressView(Panel):
    """Search pruned, distilled and int8 candidates of the current model under the accuracy budget."""

    title = "Search smaller networks"
    step = "compress"
    action = "Search smaller networks"

    def __init__(self, session: Any = None) -> None:
        self.result: Compression | None = None
        self.stages: list[str] = []
        super().__init__(session)

    def controls(self) -> list[Any]:
        """Budget, time budget, pruning schedule and students."""
        from kit.config import CompressConfig

        config = CompressConfig().smoke_if(self.session.smoke)
        self.config = config
        self.budget = widgets.FloatSlider(value=config.budget, min=0.0, max=0.05, step=0.001, readout_format=".3f",
                                          description="max metric drop", style=STYLE, layout=LAYOUT,
                                          continuous_update=False)
        self.time_budget = widgets.BoundedIntText(value=int(config.time_budget or 300), min=5, max=86_400,
                                                  description="time budget (s)", style=STYLE, layout=LAYOUT)
        self.sparsities = widgets.Text(value=", ".join(f"{s:g}" for s in config.sparsities),
                                       description="prune shares", style=STYLE, layout=LAYOUT)
        self.students = widgets.Text(value=", ".join(str(s.get("hidden", s)) for s in config.students),
                                     description="student widths", style=STYLE, layout=LAYOUT,
                                     placeholder="[32], [16]")
        return [self.budget, self.time_budget, self.sparsities, self.students]

    def _fields(self) -> dict[str, Any]:
        import json

        from kit.errors import ConfigError

        try:
            shares = tuple(float(v) for v in self.sparsities.value.split(",") if v.strip())
        except ValueError:
            raise ConfigError(f"prune shares must be numbers between 0 and 1, e.g. 0.5, 0.9, but got "
                              f"{self.sparsities.value!r}", field="sparsities") from None
        try:
            widths = json.loads(f"[{self.students.value}]")
        except json.JSONDecodeError:
            raise ConfigError(f"student widths must be lists of widths, e.g. [32], [16], but got "
                              f"{self.students.value!r}", field="students") from None
        shared = {k: v for k, v in (self.config.students[:1] or ({},))[0].items() if k != "hidden"}
        students = tuple({**shared, "hidden": w if isinstance(w, list) else [w]} for w in widths)
        return {"budget": float(self.budget.value), "time_budget": float(self.time_budget.value),
                "sparsities": shares, "students": students}

    def work(self, cancel: threading.Event) -> Compression:
        """Run the search on the current model; the chosen bundle becomes current."""
        from kit.quantize import compress

        bundle = self.session.require_bundle()
        self.stages = []

        def progress(stage: str) -> None:
            self.stages.append(stage)
            self._say(f"{len(self.stages)}. {stage} ...")

        self.result = compress(bundle, self.config.replace(**self._fields()), progress=progress,
                               should_stop=cancel.is_set)
        if self.result.bundle is not bundle:
            self.session.set_bundle(self.result.bundle, "quantize")
        self.session.record("compress", self.result.report.to_json(), self.result)
        return self.result

    def render(self) -> None:
        """The frontier table, the choice and what was skipped."""
        if self.result is None:
            return
        report = self.result.report
        frame = report.frame.drop(columns=["lineage", "int8"], errors="ignore").reset_index()
        skipped = "".join(f"<li>{html.escape(s)}</li>" for s in report.skipped)
        lineage = " → ".join(html.escape(s) for s in report.lineage())
        self.table.value = (f"<p>chosen: <b>{html.escape(report.chosen)}</b> — {html.escape(self.result.reason)}</p>"
                            f"<p>lineage: {lineage}</p>"
                            f"<p>metric: <b>{report.metric}</b> on the test split, drop versus the original "
                            f"network (positive = worse); latencies in µs; {len(self.stages)} stages in "
                            f"{report.settings.get('seconds')} s</p>"
                            + frame.to_html(index=False, float_format=lambda v: f"{v:.4g}")
                            + (f"<p>skipped:</p><ul>{skipped}</ul>" if skipped else ""))

    def make_figure(self) -> Figure | None:
        """Metric drop against latency at batch 1, at batch 64 and against size."""
        return self.result.report.plot() if self.result is not None else None
