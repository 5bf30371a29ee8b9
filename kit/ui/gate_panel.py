"""Gate panel: run the release checks on the current model, see each check, keep every run.

The panel calls :func:`kit.gate.gate` with ``session.gate_config`` as edited here (the main
thresholds, the baseline check's gap and action, and the slice column). Every run is recorded in
the model (``bundle.gate.history``); the verdict Package relies on follows the rule of
:mod:`kit.gate._history`: a pass replaces a failure only with the same settings for the failed
checks, or as an override with a reason.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.config import GATE_CHECKS, GateConfig
from kit.config._steps import BASELINE_ACTIONS
from kit.errors import ConfigError
from kit.ui._base import LAYOUT, STYLE, Panel, table_html

if TYPE_CHECKING:
    from kit.sections import GateReport

NO_SLICE = "(no slice check)"


def _optional_float(text: str, name: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number or empty, but got {text!r}", field=name) from None


class GatePanel(Panel):
    """Release checks on the current model before it is packaged; the verdict is stored in the model."""

    title = "Gate"
    step = "gate"
    action = "Run the gate"

    def controls(self) -> list[Any]:
        """Main thresholds, the baseline check, the slice column, checks to skip and an override reason."""
        cfg = self.session.gate_config

        def limit(description: str, value: float) -> Any:
            return widgets.BoundedFloatText(value=value, min=0.0, max=1e9, description=description, style=STYLE,
                                            layout=LAYOUT)

        self.metric_floor = widgets.Text(value="" if cfg.metric_floor is None else repr(cfg.metric_floor),
                                         placeholder="empty: beat the trivial baseline", description="metric floor",
                                         style=STYLE, layout=LAYOUT)
        self.max_drop = widgets.Text(value="" if cfg.max_metric_drop is None else repr(cfg.max_metric_drop),
                                     placeholder="empty: the quantization budget", description="max runtime drop",
                                     style=STYLE, layout=LAYOUT)
        self.max_baseline_gap = widgets.Text(
            value="" if cfg.max_baseline_gap is None else repr(cfg.max_baseline_gap),
            placeholder="empty: the shared budget", description="max baseline gap", style=STYLE, layout=LAYOUT)
        self.baseline_action = widgets.Dropdown(options=list(BASELINE_ACTIONS), value=cfg.baseline_action,
                                                description="baseline gap does", style=STYLE, layout=LAYOUT)
        self.max_p99_ms = limit("max p99 ms", cfg.max_p99_ms)
        self.max_flip = limit("max noise flips", cfg.max_noise_flip_rate)
        self.max_missing = limit("max missing flips", cfg.max_missing_flip_rate)
        self.max_ece = limit("max calibration err", cfg.max_ece)
        self.slice_column = widgets.Dropdown(options=[NO_SLICE], value=NO_SLICE, description="slice column",
                                             style=STYLE, layout=LAYOUT)
        self.max_slice_gap = limit("max slice gap", cfg.max_slice_gap)
        self.skip = widgets.SelectMultiple(options=list(GATE_CHECKS), value=tuple(cfg.skip), rows=4,
                                           description="skip checks", style=STYLE, layout=LAYOUT)
        self.reason = widgets.Text(value="", placeholder="only to replace a failure with laxer settings",
                                   description="override reason", style=STYLE, layout=LAYOUT)
        self.history = widgets.HTML()
        self._slices()
        left = [self.metric_floor, self.max_drop, self.max_baseline_gap, self.baseline_action, self.max_p99_ms,
                self.max_flip, self.max_missing]
        right = [self.max_ece, self.slice_column, self.max_slice_gap, self.skip, self.reason]
        return [widgets.HBox([widgets.VBox(left), widgets.VBox(right)])]

    def __init__(self, session: Any = None) -> None:
        super().__init__(session)
        self.widget.children = (*self.widget.children, widgets.HTML("<b>Every gate run on this model</b>"),
                                self.history)

    def _slices(self) -> None:
        """Offer the current model's categorical features (and numbers with few values) as slice columns."""
        bundle, ds = self.session.bundle, self.session.dataset
        options = [NO_SLICE]
        if bundle is not None:
            kinds = bundle.preprocessor.kinds_
            for name in bundle.feature_names:
                few = ds is not None and name in ds.frame and ds.frame[name].nunique() <= 20
                if kinds[name] == "categorical" or few:
                    options.append(name)
        chosen = self.session.gate_config.slice_column
        self.slice_column.options = options
        self.slice_column.value = chosen if chosen in options else NO_SLICE

    def config(self) -> GateConfig:
        """The GateConfig the controls describe (validated; other fields keep the session's)."""
        column = None if self.slice_column.value == NO_SLICE else str(self.slice_column.value)
        return self.session.gate_config.replace(
            metric_floor=_optional_float(self.metric_floor.value, "metric_floor"),
            max_metric_drop=_optional_float(self.max_drop.value, "max_metric_drop"),
            max_baseline_gap=_optional_float(self.max_baseline_gap.value, "max_baseline_gap"),
            baseline_action=str(self.baseline_action.value),
            max_p99_ms=float(self.max_p99_ms.value), max_noise_flip_rate=float(self.max_flip.value),
            max_missing_flip_rate=float(self.max_missing.value), max_ece=float(self.max_ece.value),
            slice_column=column, max_slice_gap=float(self.max_slice_gap.value), skip=tuple(self.skip.value))

    def work(self, cancel: threading.Event) -> GateReport:
        """Gate the current model on its own test split and make the gated model current."""
        from kit.gate import gate

        bundle = self.session.require_bundle()
        config = self.config()
        self.session.gate_config = config
        gated, report = gate(bundle, self.session.dataset, config, reason=self.reason.value.strip() or None)
        self.session.set_bundle(gated, "gate")
        verdict = gated.gate
        assert verdict is not None
        self.session.record("gate", {"run": report.run, "passed": report.passed, "verdict_run": verdict.run,
                                     "verdict_passed": verdict.passed, "note": report.extra.get("note"),
                                     "failures": report.failures, "config": report.config}, report)
        return report

    def depends_on(self) -> tuple[str, ...]:
        """Re-render when the model changes (a new model has not been gated)."""
        return ("gate", "train", "tune", "quantize", "explain", "bundle", "data")

    def render(self) -> None:
        """This run's checks, the model's verdict and every run on the model."""
        self._slices()
        bundle = self.session.bundle
        verdict = bundle.gate if bundle is not None else None
        report: GateReport | None = self.session.objects.get("gate")
        if verdict is None:
            self.table.value = "<p><i>the current model has not been gated yet</i></p>" if bundle is not None else ""
            self.history.value = ""
            return
        if report is None or report.run not in {h.get("run") for h in verdict.history}:
            report = verdict
        color = "#1a7f37" if verdict.passed else "#cf222e"
        head = (f"<p>the model's verdict: <b style='color:{color}'>{'passed' if verdict.passed else 'FAILED'}</b> "
                f"(run {verdict.run}); Package stores this model relying on it</p>")
        note = report.extra.get("note")
        shown = (f"<p>run {report.run}: {html.escape(str(note))}</p>" if note else "") + report.table().reset_index() \
            .to_html(index=False, float_format=lambda v: f"{v:.4g}")
        self.table.value = head + shown
        rows = [{"run": h.get("run"), "passed": h.get("passed"), "accepted": h.get("accepted"), "note": h.get("note"),
                 "by": h.get("by"), "at": h.get("created_at")} for h in verdict.history]
        self.history.value = table_html(rows)

    def summary_html(self) -> str:
        """The verdict, the checks and the history."""
        return str(self.table.value) + str(self.history.value)
