"""What every panel shares: a background job with a cancel flag, a status line, PNG plots.

A panel is a thin layer over one ``kit`` step. Its :meth:`Panel.start` runs the step in a
background thread (the notebook stays responsive and a Stop button sets the cancel flag);
:meth:`Panel.run` runs the same step synchronously, which is what headless notebooks
(papermill) and tests call. Plots are rendered with matplotlib's Agg canvas into an
``ipywidgets.Image`` (thread-safe, and the PNG is kept in the saved widget state) and, for
readers without a widget frontend, :meth:`Panel.show_static` displays plain HTML and PNG.
"""

from __future__ import annotations

import base64
import html
import io
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.errors import KitError
from kit.ui.session import Session

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLE = {"description_width": "140px"}
LAYOUT = {"width": "420px"}


class Job:
    """One background run of a step: a thread, a cancel flag, the result or the error."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.cancel = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        """Whether the step is still running."""
        return self.thread is not None and self.thread.is_alive()

    def start(self, work: Callable[[threading.Event], Any], done: Callable[[Job], None]) -> None:
        """Run ``work(cancel_flag)`` in a daemon thread, then ``done(self)`` in that thread."""
        self.cancel = threading.Event()
        self.result, self.error = None, None

        def target() -> None:
            try:
                self.result = work(self.cancel)
            except BaseException as exc:
                self.error = exc
            finally:
                done(self)

        self.thread = threading.Thread(target=target, daemon=True, name="kit-ui-job")
        self.thread.start()

    def stop(self) -> None:
        """Ask the step to stop at its next check (an epoch or a trial boundary)."""
        self.cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; ``False`` if it is still running after ``timeout`` seconds."""
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running


def figure(width: float = 6.4, height: float = 3.2) -> Figure:
    """A matplotlib figure on the Agg canvas (no pyplot, so it is safe in any thread)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90, layout="tight")
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def with_fallback(bundle: Any, static: str) -> Any:
    """A widget's display data plus a ``text/html`` fallback, what a reader without a widget renderer shows.

    JupyterLab renders the widget; an HTML report (nbconvert) or a viewer offline shows the HTML.
    """
    if isinstance(bundle, tuple):
        data, metadata = bundle
        return {**data, "text/html": static}, metadata
    return {**(bundle or {}), "text/html": static}


def error_text(exc: BaseException) -> str:
    """One readable line for an error: a KitError's message, else the exception's type and text."""
    if isinstance(exc, KitError):
        where = ", ".join(f"{k}={v}" for k, v in (("field", exc.field), ("row", exc.row), ("file", exc.file))
                          if v is not None)
        return exc.message + (f" [{where}]" if where else "")
    return f"{type(exc).__name__}: {exc}"


def table_html(rows: list[dict[str, Any]], max_rows: int = 30) -> str:
    """A small HTML table from a list of dicts (floats shown with 4 digits)."""
    if not rows:
        return "<i>nothing yet</i>"
    cols = list(dict.fromkeys(k for row in rows for k in row))

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in cols) + "</tr>"
                   for r in rows[:max_rows])
    more = f"<p><i>... {len(rows) - max_rows} more rows</i></p>" if len(rows) > max_rows else ""
    return f"<table class='kit-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def metrics_html(metrics: dict[str, dict[str, float]]) -> str:
    """Metrics by split as an HTML table (one row per metric, one column per split)."""
    names = list(dict.fromkeys(k for split in metrics.values() for k in split))
    rows = [{"metric": n, **{s: metrics[s].get(n, "") for s in metrics}} for n in names]
    return table_html(rows)


class Panel:
    """Base class of the step panels.

    Subclasses set :attr:`title` and :attr:`step`, build their controls in :meth:`controls`,
    do the step in :meth:`work` (calling ``kit`` only) and show its outcome in :meth:`render`.

    Args:
        session: The shared session; a new one when omitted.
    """

    title = "step"
    step = "step"
    action = "Run"

    def __init__(self, session: Session | None = None) -> None:
        self.session = session if session is not None else Session()
        self.job = Job()
        self._queue: list[tuple[Callable[[threading.Event], Any] | None, str]] = []
        self._queue_lock = threading.Lock()
        self.status = widgets.HTML(value="")
        self.button = widgets.Button(description=self.action, button_style="primary", icon="play",
                                     layout={"width": "auto"})  # never a cut label ("Compare varia...")
        self.stop_button = widgets.Button(description="Stop", button_style="warning", icon="stop",
                                          disabled=True, layout={"width": "auto"})
        self.button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self.plot = widgets.Image(format="png", layout={"max_width": "640px", "display": "none"})
        self.table = widgets.HTML(value="")
        self.widget = widgets.VBox([*self.controls(), widgets.HBox([self.button, self.stop_button]),
                                    self.status, self.table, self.plot])
        self.session.subscribe(self._changed)

    # -- to override ---------------------------------------------------------------------------
    def controls(self) -> list[Any]:
        """The panel's input widgets (shown above the buttons)."""
        return []

    def work(self, cancel: threading.Event) -> Any:
        """Do the step (calling ``kit`` functions); check ``cancel`` where it can stop early."""
        raise NotImplementedError

    def render(self) -> None:
        """Refresh the table and plot from the session (called after the step and on changes)."""

    def draw(self, fig: Figure) -> bool:
        """Draw the panel's plot into ``fig``; return ``False`` when there is nothing to draw."""
        return False

    def make_figure(self) -> Figure | None:
        """The panel's plot (default: a new figure filled by :meth:`draw`), or ``None``."""
        fig = figure()
        return fig if self.draw(fig) else None

    def summary_html(self) -> str:
        """The panel's outcome as static HTML (for readers without a widget frontend)."""
        return str(self.table.value)

    def depends_on(self) -> tuple[str, ...]:
        """Session events that make this panel re-render."""
        return ()

    # -- running -------------------------------------------------------------------------------
    def run(self, work: Callable[[threading.Event], Any] | None = None) -> Any:
        """Run the step (or ``work``) synchronously in this thread (headless notebooks, tests).

        Returns:
            The step's result.

        Raises:
            KitError: What the step raises for bad input (also shown in the status line).
        """
        self._busy(True)
        start = time.perf_counter()
        try:
            result = (work or self.work)(threading.Event())
        except BaseException as exc:
            self._busy(False)
            self._say(error_text(exc), error=True)
            raise
        self._busy(False)
        self._finished(result, time.perf_counter() - start)
        return result

    def start(self, work: Callable[[threading.Event], Any] | None = None, what: str = "running") -> Job:
        """Run the step (or another ``work(cancel)``) in a background thread, as a button does.

        Returns:
            The job (``job.wait()`` blocks until it ends); the running one if a job is still busy.
        """
        with self._queue_lock:
            if self.job.running:  # a click while a step runs is queued, never dropped: it runs next
                self._queue.append((work, what))
                self._say(f"{what}: queued, runs when the current step ends")
                return self.job
        self._busy(True)
        self._say(f"{what} ...")
        began = time.perf_counter()

        def done(job: Job) -> None:
            try:
                if job.error is not None:
                    self._say(error_text(job.error), error=True)
                    if not isinstance(job.error, KitError):
                        self.table.value = f"<pre>{html.escape(''.join(traceback.format_exception(job.error)))}</pre>"
                else:
                    self._finished(job.result, time.perf_counter() - began)
            finally:  # the buttons come back only once the outcome is shown
                self._busy(False)
                threading.Thread(target=self._next, daemon=True).start()  # after this job's thread has ended

        self.job.start(work or self.work, done)
        return self.job

    def _next(self) -> None:
        """Start the first queued step once the job that was running has ended."""
        self.job.wait()
        with self._queue_lock:
            if not self._queue or self.job.running:
                return
            work, what = self._queue.pop(0)
        self.start(work, what)

    def stop(self) -> None:
        """Ask the running step to stop (and drop the steps queued behind it)."""
        with self._queue_lock:
            self._queue.clear()
        self.job.stop()
        self._say("stopping ...")

    # -- display -------------------------------------------------------------------------------
    def refresh_plot(self) -> None:
        """Redraw the plot widget from the current state (hidden while there is nothing to draw)."""
        fig = self.make_figure()
        if fig is not None:
            self.plot.value = png(fig)
            self.plot.layout.display = None
        else:
            self.plot.layout.display = "none"

    def images(self) -> list[bytes]:
        """The panel's plots as PNG bytes, for the static view."""
        return [bytes(self.plot.value)] if self.plot.value else []

    def static_html(self) -> str:
        """The panel as it looks now, in plain HTML with the plots inlined (no widget renderer needed)."""
        pictures = "".join(f"<img alt='{html.escape(self.title)} plot' style='max-width:640px' "
                           f"src='data:image/png;base64,{base64.b64encode(p).decode()}'/>" for p in self.images())
        return (f"<div class='kit-static'><h4>{html.escape(self.title)}</h4>{self.status.value}"
                f"{self.summary_html()}{pictures}</div>")

    def show_static(self) -> None:
        """Display the outcome as plain HTML and PNG (what papermill reports and nbconvert keep)."""
        from IPython.display import HTML, display

        display(HTML(self.static_html()))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_fallback(self.widget._repr_mimebundle_(**kwargs), self.static_html())

    def _finished(self, result: Any, seconds: float) -> None:
        self._safe_render()  # before "done": a status that says done means everything is shown
        self._say(f"done in {seconds:.1f} s" + ("" if not self.job.cancel.is_set() else " (stopped by you)"))

    def _safe_render(self) -> None:
        try:
            self.render()
            self.refresh_plot()
        except Exception as exc:
            self._say(f"cannot display the result: {error_text(exc)}", error=True)

    def _changed(self, what: str) -> None:
        if what in self.depends_on() and not self.job.running:
            self._safe_render()

    def _busy(self, busy: bool) -> None:
        self.button.disabled = busy
        self.stop_button.disabled = not busy

    def _say(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "#555"
        self.status.value = f"<span style='color:{color}'>{html.escape(text)}</span>"
