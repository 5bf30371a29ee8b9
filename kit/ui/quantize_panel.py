"""Quantize panel: the variant table, the Pareto plot, an accuracy-budget slider and the chosen variant.

Moving the budget slider re-selects from the same measurements (no re-run) and makes the chosen
variant's bundle current, so the Package step ships what the panel shows.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.ui._base import LAYOUT, STYLE, Panel, error_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.bundle import ModelBundle
    from kit.quantize import QuantReport, Selection

COLUMNS = ["status", "metric", "metric_drop", "label_agreement", "p50_batch1", "p50_batch1_noise", "p99_batch1",
           "p50_batch64", "size_bytes", "size_ratio", "batch_invariant"]


class QuantizePanel(Panel):
    """Build fp32 / int8 / fp16 variants side by side and pick the fastest within an accuracy budget."""

    title = "Quantize"
    step = "quantize"
    action = "Compare variants"

    def __init__(self, session: Any = None) -> None:
        self.report: QuantReport | None = None
        self.selection: Selection | None = None
        self.source: ModelBundle | None = None
        super().__init__(session)
        from kit.ui.compress_view import CompressView

        self.compress = CompressView(self.session)  # #17: pruning, distillation, accuracy-aware int8
        self.search = widgets.Checkbox(value=False, description="search smaller networks", style=STYLE)
        self.compress.widget.layout.display = "none"
        self.search.observe(lambda c: setattr(self.compress.widget.layout, "display", None if c["new"] else "none"),
                            names="value")
        self.widget.children = (*self.widget.children, self.budget, self.choice, self.search, self.compress.widget)

    def controls(self) -> list[Any]:
        """Variants, timing repeats and the accuracy budget."""
        from kit.quantize import VARIANTS

        config = self.session.quantize_config
        names = list(VARIANTS)
        default = list(config.variants or names)
        self.variants = widgets.SelectMultiple(options=names, value=default, rows=len(names), description="variants",
                                               style=STYLE, layout=LAYOUT)
        self.repeats = widgets.BoundedIntText(value=config.repeats, min=1, max=100_000,
                                              description="timed repeats", style=STYLE, layout=LAYOUT)
        self.budget = widgets.FloatSlider(value=config.budget, min=0.0, max=0.05, step=0.001, readout_format=".3f",
                                          description="max metric drop", style=STYLE, layout=LAYOUT,
                                          continuous_update=False)
        self.choice = widgets.HTML()
        self.budget.observe(lambda _c: self._reselect(), names="value")
        return [self.variants, self.repeats]

    def work(self, cancel: threading.Event) -> Selection:
        """Compare the variants on the test split (calibrating static int8 on training rows), then select."""
        from kit.quantize import compare

        bundle = self.session.require_bundle()
        self.session.require_data()
        splits, ds = self.session.splits, self.session.dataset
        assert splits is not None and ds is not None
        y = splits.test.y if ds.task == "regression" else [ds.label_names[i] for i in splits.test.y]  # type: ignore[index]
        repeats = int(self.repeats.value)
        self.source = bundle
        self.report = compare(bundle, splits.test.X, y, calibration=splits.train.X,
                              variants=tuple(self.variants.value), budget=float(self.budget.value),
                              repeats=repeats, warmup=max(1, repeats // 10))
        return self._select()

    def _select(self) -> Selection:
        from kit.quantize import attach, select

        assert self.report is not None and self.source is not None
        self.selection = select(self.report, budget=float(self.budget.value))
        chosen = attach(self.source, self.selection)
        self.session.set_bundle(chosen, "quantize")
        section = chosen.quantization
        assert section is not None
        self.session.record("quantize", section.to_dict(), self.selection)
        return self.selection

    def _reselect(self) -> None:
        if self.report is None or self.job.running:
            return
        try:
            self._select()
            self._safe_render()
        except Exception as exc:
            self._say(error_text(exc), error=True)

    def render(self) -> None:
        """The variant table and the chosen variant with every reason."""
        if self.report is None:
            return
        frame = self.report.frame[[c for c in COLUMNS if c in self.report.frame.columns]].reset_index()
        self.table.value = (f"<p>metric: <b>{self.report.metric}</b> on the test split; latencies in µs; "
                            "<code>_noise</code>: how much the latency moved across the interleaved timing rounds "
                            "(a variant counts as faster only beyond it)</p>"
                            + frame.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
        if self.selection is not None:
            reasons = "".join(f"<li>{html.escape(r)}</li>" for r in self.selection.reasons)
            self.choice.value = f"<p>chosen variant: <b>{self.selection.variant}</b></p><ul>{reasons}</ul>"

    def make_figure(self) -> Figure | None:
        """Latency against metric per variant, with the Pareto front."""
        return self.report.plot() if self.report is not None else None

    def summary_html(self) -> str:
        """Variant table and the choice (and the smaller networks' search, when it ran)."""
        searched = self.compress.static_html() if self.compress.result is not None else ""
        return str(self.table.value) + str(self.choice.value) + searched
