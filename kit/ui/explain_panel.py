"""Explain panel: SHAP values of test rows, the global importance plot and a row picker with its waterfall.

An image model is explained per pixel instead (:mod:`kit.ui.explain_images_view`): the global mean
|SHAP| map, then the picked images with the heat map of the explained class over each.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.ui._base import LAYOUT, STYLE, Panel, png, table_html
from kit.ui.explain_images_view import ImageExplainView

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.explain import Explanation

IMAGE_METHODS = ("auto", "deep", "gradient")
"""The methods an image model is explained with (per pixel)."""


class ExplainPanel(Panel):
    """Explain the current bundle on test rows (background: training rows); pick a row to see why.

    The panel follows the current model's kind: a table model gets the table path (importance bar
    and one row's waterfall), an image model the image path (:class:`ImageExplainView`).
    """

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
        self.image_view = ImageExplainView(self)
        return [self.rows, self.method, self.background_size, self.image_view.controls]

    def __init__(self, session: Any = None) -> None:
        self.kind = ""
        super().__init__(session)
        self.detail = widgets.HTML("<b>One row</b>")
        self.widget.children = (*self.widget.children, self.detail, self.image_view.picker, self.row, self.row_info,
                                self.row_plot)
        self.follow_kind()

    @property
    def explanation(self) -> Explanation | None:
        """The last table explanation (kept in the session)."""
        from kit.explain import Explanation

        ex = self.session.objects.get("explain")
        return ex if isinstance(ex, Explanation) else None

    def model_kind(self) -> str:
        """``image`` or ``table``: the current model's input, else the loaded data's."""
        bundle = self.session.bundle
        return bundle.kind if bundle is not None else self.session.data_kind

    def follow_kind(self) -> None:
        """Show the controls of the current model's kind; another kind clears what was shown."""
        from kit.explain import METHODS

        kind = self.model_kind()
        image = kind == "image"
        bundle = self.session.bundle
        if image:
            self.image_view.set_classes(list(bundle.label_names or []) if bundle is not None else
                                    list(getattr(self.session.dataset, "label_names", None) or []))
        if kind == self.kind:
            return
        self.kind = kind
        method = self.method.value
        self.method.options = list(IMAGE_METHODS if image else METHODS)
        self.method.value = method if method in self.method.options else "auto"
        self.rows.description = "test images" if image else "test rows"
        self.background_size.description = "background images" if image else "background rows"
        self.row.description = "first image" if image else "row"
        self.detail.value = "<b>Images</b>" if image else "<b>One row</b>"
        self.plot.layout.max_width = "380px" if image else "640px"  # the map at about its own size
        for box in (self.image_view.controls, self.image_view.picker):
            box.layout.display = None if image else "none"
        self.table.value, self.row_info.value = "", ""
        for plot in (self.plot, self.row_plot):
            plot.value = b""
            plot.layout.display = "none"
        self.row.max, self.row.disabled = 0, True

    def _changed(self, what: str) -> None:
        if what in ("data", "bundle", "train", "tune", "quantize") and not self.job.running:
            self.follow_kind()
        super()._changed(what)

    def work(self, cancel: threading.Event) -> Any:
        """Explain test rows against a training-rows background and store the result in the bundle.

        An image model: :meth:`ImageExplainView.work` (per pixel, with progress; Stop keeps what was done).
        """
        from kit.explain import attach, explain

        self.follow_kind()
        if self.kind == "image":
            return self.image_view.work(cancel)
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
        if self.kind == "image":
            self.image_view.render()
            return
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
        """Global importance: mean |SHAP| per feature (images: the mean |SHAP| map)."""
        if self.kind == "image":
            image = self.image_view.explanation
            return image.plot_global() if image is not None and len(image.values) else None
        ex = self.explanation
        return ex.plot_bar(max_display=12) if ex is not None else None

    def row_figure(self) -> Figure | None:
        """The waterfall of the picked row."""
        ex = self.explanation
        if ex is None:
            return None
        return ex.plot_waterfall(int(self.row.value), max_display=10)

    def show_row(self) -> None:
        """Render the picked row's prediction and waterfall (images: the picked images' overlay)."""
        if self.kind == "image":
            self.image_view.show_picked()
            return
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
        """Global plot, then the picked row's waterfall (images: the picked images' overlay)."""
        return super().images() + ([bytes(self.row_plot.value)] if self.row_plot.value else [])

    def summary_html(self) -> str:
        """The summary (images: with the line of each image shown)."""
        return str(self.table.value) + (str(self.row_info.value) if self.kind == "image" else "")
