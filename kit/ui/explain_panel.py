"""Explain panel: SHAP values of test rows, the global importance plot and a row picker with its waterfall."""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.ui._base import LAYOUT, STYLE, Panel, png, table_html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.explain import Explanation



class ExplainPanel(Panel):
    """Explain the current bundle on test rows (background: training rows); pick a row to see why."""

    title = "Explain"
    step = "explain"
    action = "Explain"

    def controls(self) -> list[Any]:
        """Rows, method and background size; the row picker lives under the plots."""
        from kit.explain import METHODS

        config = self.session.explain_config
        self.rows = widgets.BoundedIntText(value=config.rows, min=1, max=1000,
                                           description="test rows", style=STYLE, layout=LAYOUT)
        self.method = widgets.Dropdown(options=list(METHODS), value=config.method, description="method", style=STYLE,
                                       layout=LAYOUT)
        self.background_size = widgets.BoundedIntText(value=config.background_size, min=5, max=2000,
                                                      description="background rows", style=STYLE, layout=LAYOUT)
        self.row = widgets.IntSlider(value=0, min=0, max=0, description="row", style=STYLE, layout=LAYOUT,
                                     disabled=True)
        self.row_info = widgets.HTML()
        self.row_plot = widgets.Image(format="png", layout={"max_width": "700px", "display": "none"})
        self.row.observe(lambda _c: self.show_row(), names="value")
        return [self.rows, self.method, self.background_size]

    def __init__(self, session: Any = None) -> None:
        super().__init__(session)
        self.widget.children = (*self.widget.children, widgets.HTML("<b>One row</b>"), self.row, self.row_info,
                                self.row_plot)

    @property
    def explanation(self) -> Explanation | None:
        """The last explanation (kept in the session)."""
        ex: Explanation | None = self.session.objects.get("explain")
        return ex

    def work(self, cancel: threading.Event) -> Explanation:
        """Explain test rows against a training-rows background and store the ranking in the bundle."""
        from kit.explain import attach, explain

        bundle = self.session.require_bundle()
        self.session.require_data()
        splits = self.session.splits
        assert splits is not None
        X = splits.test.X.head(int(self.rows.value))
        ex = explain(bundle, X, background=splits.train.X, method=self.method.value,
                     background_size=int(self.background_size.value))
        self.session.set_bundle(attach(bundle, ex), "explain")
        self.session.record("explain", {**ex.section().to_dict(), "rows": len(X)}, ex)
        return ex

    def render(self) -> None:
        """The top features, how the method was chosen, and the row picker's range."""
        ex = self.explanation
        if ex is None:
            return
        top = [{str(k): v for k, v in r.items()} for r in ex.importance().head(10).reset_index().to_dict("records")]
        self.table.value = (f"<p>method <b>{ex.method}</b> on {len(ex.values)} rows, explaining the "
                            f"{html.escape(ex.output)}; additivity error {ex.additivity_error:.1e}</p>"
                            f"<p><small>{html.escape(ex.why)}</small></p>" + table_html(top))
        self.row.max = len(ex.values) - 1
        self.row.disabled = False
        self.show_row()

    def make_figure(self) -> Figure | None:
        """Global importance: mean |SHAP| per feature."""
        ex = self.explanation
        return ex.plot_bar(max_display=12) if ex is not None else None

    def row_figure(self) -> Figure | None:
        """The waterfall of the picked row."""
        ex = self.explanation
        if ex is None:
            return None
        return ex.plot_waterfall(int(self.row.value), max_display=10)

    def show_row(self) -> None:
        """Render the picked row's prediction and waterfall."""
        ex = self.explanation
        if ex is None:
            return
        i = int(self.row.value)
        predicted = ""
        if ex.predicted is not None:
            p = f" (p = {float(ex.confidence[i]):.3f})" if ex.confidence is not None else ""
            predicted = f"predicted <b>{html.escape(str(ex.predicted[i]))}</b>{p}; "
        self.row_info.value = (f"row {i}: {predicted}explained output: {html.escape(ex.output)} = "
                               f"{ex.outputs[i]:.4f} = base {ex.base_values[i]:.4f} + "
                               f"sum of SHAP values {ex.values[i].sum():.4f}")
        fig = self.row_figure()
        if fig is not None:
            self.row_plot.value = png(fig)
            self.row_plot.layout.display = None

    def images(self) -> list[bytes]:
        """Global plot, then the picked row's waterfall."""
        return super().images() + ([bytes(self.row_plot.value)] if self.row_plot.value else [])
