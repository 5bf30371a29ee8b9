"""The Wizard: every step's panel in one tabbed UI over one shared :class:`~kit.ui.session.Session`."""

from __future__ import annotations

import html
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from kit.config import DataConfig, TrainConfig
from kit.ui._base import Panel, error_text, with_fallback
from kit.ui.session import Session

STEPS: dict[str, tuple[str, str]] = {
    "data": ("kit.ui.data_panel", "DataPanel"),
    "train": ("kit.ui.train_panel", "TrainPanel"),
    "tune": ("kit.ui.tune_panel", "TunePanel"),
    "explain": ("kit.ui.explain_panel", "ExplainPanel"),
    "quantize": ("kit.ui.quantize_panel", "QuantizePanel"),
    "gate": ("kit.ui.gate_panel", "GatePanel"),
    "package": ("kit.ui.package_panel", "PackagePanel"),
}
"""Step name -> (module, class) of its panel, in wizard order."""


def panel_class(step: str) -> type[Panel] | None:
    """The panel class of ``step``, or ``None`` when that step is not available in this install."""
    module_name, cls = STEPS[step]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == module_name or exc.name.startswith("kit.")):
            return None
        raise
    found: type[Panel] = getattr(module, cls)
    return found


class Wizard:
    """All step panels as tabs over one session: data -> train -> tune -> explain -> quantize -> gate -> package.

    Displayed, the wizard is the live widget in JupyterLab and, for every other reader (an HTML
    report, a viewer without a kernel, offline), a static HTML copy of every panel with its plots
    inlined; :meth:`run_all` refreshes that copy after each step, so a report shows the final state.

    Args:
        session: The shared state; built from the other arguments when omitted.
        data: Data settings (or a built-in name / file path).
        train: Training settings.
        output_dir: Where bundles and results go.
        smoke: Tiny epochs and trials (for CI).
        steps: Which steps to show, in order (default: every available step).

    Example:
        >>> from kit.ui import Wizard
        >>> wizard = Wizard(data="breast_cancer")
        >>> wizard            # shows the tabs in JupyterLab
        >>> wizard.run_all()  # or run every step from code (what papermill does)
    """

    def __init__(self, session: Session | None = None, *, data: DataConfig | str | None = None,
                 train: TrainConfig | None = None, output_dir: str | Path = "runs/wizard", smoke: bool = False,
                 steps: Sequence[str] | None = None) -> None:
        if session is None:
            data_config = DataConfig(source=data) if isinstance(data, str) else (data or DataConfig())
            session = Session(data_config=data_config, train_config=train or TrainConfig(),
                              output_dir=Path(output_dir), smoke=smoke)
        self.session = session
        self.panels: dict[str, Panel] = {}
        self.missing: list[str] = []
        for step in steps or list(STEPS):
            if step not in STEPS:
                raise ValueError(f"unknown step {step!r}; steps are {', '.join(STEPS)}")
            cls = panel_class(step)
            if cls is None:
                self.missing.append(step)
            else:
                self.panels[step] = cls(session)
        self.header = widgets.HTML()
        children: list[Any] = [p.widget for p in self.panels.values()]
        titles = [f"{i + 1}. {p.title}" for i, p in enumerate(self.panels.values())]
        for step in self.missing:
            children.append(widgets.HTML(f"<p>The <b>{step}</b> step is not available in this install "
                                         f"(module <code>{STEPS[step][0]}</code> or the kit step it "
                                         "calls is missing).</p>"))
            titles.append(f"{step} (n/a)")
        self.tabs = widgets.Tab(children=children, titles=titles)
        self.widget = widgets.VBox([widgets.HTML("<h3>kit wizard</h3>"), self.header, self.tabs])
        session.subscribe(lambda _what: self._header())
        self._header()

    def __getitem__(self, step: str) -> Panel:
        return self.panels[step]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_fallback(self.widget._repr_mimebundle_(**kwargs), self.static_html())

    def _ipython_display_(self) -> None:
        from IPython.display import display

        self._display = display(self._repr_mimebundle_(), raw=True, display_id=True)

    def static_html(self) -> str:
        """Every panel as it looks now, one after the other, in plain HTML with inlined plots."""
        body = "".join(p.static_html() for p in self.panels.values())
        return (f"<div class='kit-wizard-static'><h3>kit wizard</h3><p>{self.header.value}</p>{body}</div>")

    def refresh_display(self) -> None:
        """Update the displayed wizard's static copy (what reports show) to the current state."""
        handle = getattr(self, "_display", None)
        if handle is not None:
            handle.update(self._repr_mimebundle_(), raw=True)

    def _header(self) -> None:
        s = self.session
        if s.data_error:
            parts = [f"data: <span style='color:#b00020'>not loaded ({html.escape(s.data_error[:120])})</span>"]
        else:
            parts = [f"data: <b>{html.escape(s.dataset.name if s.dataset else s.data_config.source)}</b>"]
        if s.bundle is not None:
            metric = s.bundle.primary_metric
            value = s.bundle.metrics.get("test", {}).get(metric)
            parts.append(f"model: {metric} {value:.4f} (test)" if value is not None else "model: trained")
            parts.append(f"runtime: {s.bundle.runtime_info.get('name')}/{s.bundle.runtime_info.get('variant')}")
            gate = s.bundle.gate
            parts.append("gate: not run" if gate is None else
                         f"gate: {'passed' if gate.passed else 'FAILED'} (run {gate.run})")
        parts += [f"{k}: <code>{html.escape(v)}</code>" for k, v in s.tags.items()]
        if s.stale:
            parts.append(f"<span style='color:#8a6d00'>{html.escape(s.stale)}</span>")
        self.header.value = " &middot; ".join(parts)

    def select(self, step: str) -> None:
        """Show the tab of ``step``."""
        self.tabs.selected_index = list(self.panels).index(step)

    def run_all(self, steps: Sequence[str] | None = None, static: bool = True) -> dict[str, Any]:
        """Run the steps in order, synchronously (headless notebooks and tests).

        Args:
            steps: Steps to run (default: every panel of the wizard).
            static: Also display each step's outcome as plain HTML and PNG (readable in reports).

        Returns:
            Each step's result.

        Raises:
            KitError: The first step's error; later steps do not run.
        """
        out: dict[str, Any] = {}
        for step in steps or list(self.panels):
            panel = self.panels[step]
            self.select(step)
            try:
                out[step] = panel.run()
            except Exception as exc:
                self.header.value = f"<span style='color:#b00020'>{step} failed: {html.escape(error_text(exc))}</span>"
                self.refresh_display()
                raise
            if static:
                panel.show_static()
            self.refresh_display()
        return out

    def write_results(self, notebook: str = "00_quickstart", **extra: Any) -> Path:
        """Write the session's ``results.json`` (see :meth:`Session.write_results`)."""
        return self.session.write_results(notebook, missing_steps=self.missing, **extra)
