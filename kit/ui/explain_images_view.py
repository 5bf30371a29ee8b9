"""The Explain panel's image part: per-pixel SHAP of an image model, with progress and Stop.

When the current model takes images, the Explain panel runs :func:`kit.explain.explain_images` on
the first test images (background: a sample of the training images) in its background thread,
chunk by chunk: a progress bar counts the images explained and Stop ends the run at the next
chunk, keeping the images explained by then. It shows the global mean |SHAP| map, then a window
of images with the heat map of the explained class over each (the first image and how many are
picked; every image or only the misclassified ones), and a line per shown image: prediction, its
probability, the true label, and base value + sum of SHAP values = output. The class explained is
each image's predicted class or one class picked for all; picking another class explains again.
The result is attached to the model with :func:`kit.explain.attach_images`, as the table path
attaches its explanation.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.ui._base import LAYOUT, STYLE, png, table_html

if TYPE_CHECKING:
    from kit.explain import ImageExplanation
    from kit.ui.explain_panel import ExplainPanel

PREDICTED = "predicted"
"""The class dropdown's value for "each image's predicted class" (``ExplainConfig.target``)."""
SHOW = (("every explained image", "all"), ("misclassified only", "wrong"))


class ImageExplainView:
    """The image controls and views of an :class:`~kit.ui.explain_panel.ExplainPanel`.

    Attributes:
        target: The class explained: each image's predicted class, or one class for every image.
        progress: Images explained so far.
        show: Every explained image or only the misclassified ones.
        count: How many images the overlay shows, from the panel's ``row`` slider on.
        truth: The true label of each explained image (from the test split).
        note: A line shown above the summary (e.g. a stop before the first image).
    """

    def __init__(self, panel: ExplainPanel) -> None:
        self.panel = panel
        self.truth: list[str] = []
        self.note = ""
        self._quiet = False
        self.target = widgets.Dropdown(options=[("each image's predicted class", PREDICTED)], value=PREDICTED,
                                       description="class explained", style=STYLE, layout=LAYOUT)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="images", style=STYLE, layout=LAYOUT)
        self.show = widgets.Dropdown(options=SHOW, value="all", description="show", style=STYLE, layout=LAYOUT)
        self.count = widgets.BoundedIntText(value=4, min=1, max=8, description="images shown", style=STYLE,
                                            layout=LAYOUT)
        self.controls = widgets.VBox([self.target, self.progress])
        self.picker = widgets.VBox([self.show, self.count])
        self.target.observe(lambda _c: self._class_changed(), names="value")
        self.show.observe(lambda _c: self.panel.show_row(), names="value")
        self.count.observe(lambda _c: self.draw(), names="value")

    @property
    def explanation(self) -> ImageExplanation | None:
        """The last image explanation of the session, or ``None``."""
        from kit.explain import ImageExplanation

        ex = self.panel.session.objects.get("explain")
        return ex if isinstance(ex, ImageExplanation) else None

    def set_classes(self, labels: list[Any]) -> None:
        """Offer "predicted" and each class of the current model, keeping the pick when it is still one."""
        options = [("each image's predicted class", PREDICTED), *((f"class {label}", str(label)) for label in labels)]
        if [v for _, v in options] == [v for _, v in self.target.options]:
            return
        value = self.target.value
        self._quiet = True
        try:
            self.target.options = options
            self.target.value = value if value in [v for _, v in options] else PREDICTED
        finally:
            self._quiet = False

    def _class_changed(self) -> None:
        """Another class picked: explain again (queued behind a running step), the plots follow."""
        if self._quiet or self.explanation is None or self.panel.session.bundle is None:
            return
        picked = "each image's predicted class" if self.target.value == PREDICTED else f"class {self.target.value}"
        self.panel.start(what=f"explaining {picked}")

    # -- the step ------------------------------------------------------------------------------
    def work(self, cancel: threading.Event) -> ImageExplanation:
        """Explain the first test images with progress; Stop keeps what was explained; attach the result."""
        from kit.explain import attach_images, explain_images

        session, panel = self.panel.session, self.panel
        bundle = session.require_bundle()
        session.require_data()
        splits = session.splits
        assert splits is not None
        X = splits.test.X.head(int(panel.rows.value))
        labels = list(bundle.label_names or [])
        truth = [str(labels[int(v)]) if labels else str(v) for v in splits.test.y[: len(X)]]
        self.note = ""
        self.progress.max, self.progress.value = max(len(X), 1), 0

        def progress(done: int, total: int) -> None:
            self.progress.value = done
            panel._say(f"explained {done} of {total} images ...")

        ex = explain_images(bundle, X, background=splits.train.X, method=panel.method.value,
                            rows=len(X), background_size=int(panel.background_size.value), target=self.target.value,
                            seed=session.explain_config.seed, progress=progress, should_stop=cancel.is_set)
        if not len(ex.values):
            self.note = "stopped before the first image was explained: nothing new was attached to the model"
            return ex
        self.truth = truth[: len(ex.values)]
        session.set_bundle(attach_images(bundle, ex), "explain")
        section = {k: v for k, v in ex.section().to_dict().items() if k != "mean_abs_map"}  # not the whole map
        session.record("explain", {**section, "kind": "image", "rows": len(ex.values), "stopped": ex.stopped,
                                   "class_explained": self.target.value}, ex)
        return ex

    # -- display -------------------------------------------------------------------------------
    def render(self) -> None:
        """How it was explained, and the picker's range over the images shown."""
        note = f"<p style='color:#8a6d00'>{html.escape(self.note)}</p>" if self.note else ""
        ex = self.explanation
        if ex is None:
            self.panel.table.value = note
            return
        n, c, h, w = ex.values.shape
        wrong = sum(str(t) != str(p) for t, p in zip(self.truth, ex.predicted, strict=False))
        stopped = " (stopped by you)" if ex.stopped else ""
        self.panel.table.value = (
            note + f"<p>method <b>{ex.method}</b> on {n} test images of {h}x{w}x{c}{stopped}, explaining the "
            f"{html.escape(ex.output)}; additivity error {ex.additivity_error:.1e} (tolerance "
            f"{ex.tolerance:.1e}); {wrong} of them misclassified</p>"
            f"<p><small>{html.escape(ex.why)}</small></p>")
        self.show_picked()

    def candidates(self) -> list[int]:
        """The explained images the picker walks through: all, or the misclassified ones."""
        ex = self.explanation
        if ex is None:
            return []
        every = range(len(ex.values))
        if self.show.value == "wrong" and self.truth:
            return [i for i in every if i < len(self.truth) and self.truth[i] != str(ex.predicted[i])]
        return list(every)

    def picked(self) -> list[int]:
        """The images shown now: ``count`` candidates from the panel's ``row`` slider on."""
        found = self.candidates()
        first = min(int(self.panel.row.value), max(len(found) - 1, 0))
        return found[first: first + int(self.count.value)]

    def show_picked(self) -> None:
        """Set the picker's range to the candidates, then draw."""
        row, found = self.panel.row, self.candidates()
        row.max = max(len(found) - 1, 0)
        row.disabled = not found
        self.draw()

    def draw(self) -> None:
        """A line per shown image and the overlay of their heat maps."""
        ex, panel = self.explanation, self.panel
        if ex is None:
            return
        shown = self.picked()
        if not shown:
            panel.row_info.value = f"<i>none of the {len(ex.values)} explained images is misclassified</i>"
            panel.row_plot.value = b""
            panel.row_plot.layout.display = "none"
            return
        lines = [{"image": i, "predicted": str(ex.predicted[i]),
                  **({"p": float(ex.confidence[i])} if ex.confidence is not None else {}),
                  **({"true": self.truth[i]} if i < len(self.truth) else {}),
                  "class explained": str(ex.target[i]), "base": float(ex.base_values[i]),
                  "sum of SHAP": float(ex.values[i].sum()), "output": float(ex.outputs[i])} for i in shown]
        panel.row_info.value = (f"<p>images {shown[0]} to {shown[-1]} of {len(ex.values)}: output = base + sum of "
                                "SHAP values</p>" + table_html(lines))
        truth = self.truth if len(self.truth) == len(ex.values) else None
        panel.row_plot.value = png(ex.plot_overlay(shown, truth=truth))
        panel.row_plot.layout.display = None
