"""``kit run``: execute the notebooks headless with papermill and keep executed reports.

Each run writes ``<out>/<timestamp>/`` with, per notebook, the executed ``.ipynb``, an HTML
report (nbconvert, widget state embedded) and the notebook's ``output_dir`` (``results.json``
and artifacts), plus an ``index.html`` and ``summary.json`` over all of them.

Parameters are checked against each notebook's ``parameters`` cell before anything runs (papermill
only warns about an unknown one): a ``-p`` name that no selected notebook declares is an error, and
values are converted to the declared type. A parameter goes only to the notebooks that declare it,
so ``-p n_trials 5`` reaches the tuning notebook and no other. With chaining on (the default), a
notebook that declares ``bundle_path`` and was not given one continues from the bundle that the
previous notebook wrote (its ``results.json``'s ``bundle_path``).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.errors import ConfigError, DataError, require

NOTEBOOK_DIR = Path("notebooks")
RUNNER_PARAMS = ("output_dir",)
"""Parameters that ``kit run`` sets itself (one folder per notebook inside the report)."""


@dataclass
class Param:
    """One declared parameter of a notebook (from its ``parameters`` cell)."""

    name: str
    type_name: str
    default: str
    help: str


@dataclass
class NotebookRun:
    """The outcome of one notebook.

    Attributes:
        name: The notebook's stem, e.g. ``01_data_train``.
        source: The input notebook.
        executed: The executed notebook written to the report.
        html: Its HTML report (``None`` if HTML was off or failed).
        output_dir: The notebook's ``output_dir`` parameter.
        parameters: What it was given.
        ok: Whether every cell ran.
        seconds: Wall time.
        error: One line naming the cell and the error, when it failed.
        results: Its ``results.json`` (empty when missing).
    """

    name: str
    source: Path
    executed: Path
    html: Path | None
    output_dir: Path
    parameters: dict[str, Any]
    ok: bool = False
    seconds: float = 0.0
    error: str | None = None
    results: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """All notebooks of one ``kit run``."""

    folder: Path
    runs: list[NotebookRun]
    seconds: float

    @property
    def ok(self) -> bool:
        """Whether every notebook succeeded."""
        return all(r.ok for r in self.runs)

    @property
    def index(self) -> Path:
        """The report's index page."""
        return self.folder / "index.html"


def discover(names: Sequence[str] | None = None, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks to run, in order.

    Args:
        names: Paths, stems (``01_data_train``) or number prefixes (``01``); default every
            ``NN_*.ipynb`` in ``folder``.
        folder: Where stems and prefixes are looked up.

    Returns:
        Notebook paths.

    Raises:
        DataError: If a name matches no notebook.
    """
    found = sorted(p for p in folder.glob("*.ipynb") if re.match(r"\d", p.name))
    if not names:
        if not found:
            raise DataError(f"no notebooks in {folder}/ (expected files like 00_quickstart.ipynb)", file=str(folder))
        return found
    out: list[Path] = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.exists():
            out.append(path)
            continue
        matches = [p for p in found if p.stem == name or p.stem.startswith(name + "_") or p.stem == Path(name).stem]
        if len(matches) != 1:
            known = ", ".join(p.stem for p in found) or "none"
            raise DataError(f"notebook {name!r} not found (or ambiguous); notebooks in {folder}/: {known}",
                            file=name)
        out.append(matches[0])
    return out


def parameters(notebook: Path) -> dict[str, Param]:
    """The parameters a notebook declares in its cell tagged ``parameters``."""
    pm = require("papermill", "ui")
    info = pm.inspect_notebook(str(notebook))
    return {name: Param(name, str(p.get("inferred_type_name", "None")), str(p.get("default", "")),
                        str(p.get("help", ""))) for name, p in info.items()}


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce(name: str, value: Any, type_name: str) -> Any:
    """Convert a ``-p`` string (or a YAML value) to the parameter's declared type.

    Raises:
        ConfigError: If the value does not fit the type, naming the parameter.
    """
    kind = type_name.split("|")[0].strip().lower()
    if not isinstance(value, str):
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    try:
        if kind == "bool":
            if value.lower() in _TRUE | _FALSE:
                return value.lower() in _TRUE
            raise ValueError(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "str":
            return value
    except ValueError:
        raise ConfigError(f"parameter {name} is {type_name}, but got {value!r}", field=name) from None
    import yaml

    return yaml.safe_load(value)


def plan(notebooks: Sequence[Path], params: Mapping[str, Any], per_notebook: Mapping[str, Mapping[str, Any]],
         smoke: bool) -> dict[Path, dict[str, Any]]:
    """The parameters each notebook gets, after checking every name against the notebooks.

    Raises:
        ConfigError: On a parameter no selected notebook declares, a per-notebook parameter that
            notebook does not declare, a value of the wrong type, or a runner-owned parameter.
    """
    declared = {nb: parameters(nb) for nb in notebooks}
    for name in params:
        if name in RUNNER_PARAMS:
            raise ConfigError(f"parameter {name} is set by kit run (one folder per notebook under --out)",
                              field=name)
        if not any(name in d for d in declared.values()):
            known = sorted({n for d in declared.values() for n in d} - set(RUNNER_PARAMS))
            raise ConfigError(f"unknown parameter {name!r}: no selected notebook declares it; known parameters: "
                              f"{', '.join(known)}", field=name)
    stems = {nb.stem: nb for nb in notebooks}
    for stem, values in per_notebook.items():
        if stem not in stems:
            raise ConfigError(f"parameters file names notebook {stem!r}, which is not selected", field=stem)
        for name in values:
            if name not in declared[stems[stem]] or name in RUNNER_PARAMS:
                raise ConfigError(f"unknown parameter {name!r} for notebook {stem}; it declares: "
                                  f"{', '.join(declared[stems[stem]])}", field=name)
    out: dict[Path, dict[str, Any]] = {}
    for nb, decl in declared.items():
        given = {k: v for k, v in params.items() if k in decl}
        given.update(per_notebook.get(nb.stem, {}))
        if smoke and "smoke" in decl:
            given["smoke"] = True
        out[nb] = {k: coerce(k, v, decl[k].type_name) for k, v in given.items()}
    return out


def _failure(exc: BaseException, executed: Path) -> str:
    """One line naming the notebook cell that failed and the error."""
    pm_exc = require("papermill.exceptions", "ui")
    if isinstance(exc, pm_exc.PapermillExecutionError):
        index = exc.cell_index
        try:
            import nbformat

            cells = nbformat.read(executed, as_version=4).cells
            tags = [set(c.get("metadata", {}).get("tags", [])) for c in cells]
            # Count only the author's cells: not papermill's injected parameters or error markers.
            original = [i for i, t in enumerate(tags) if not t & {"injected-parameters", "papermill-error-cell-tag"}]
            source = str(exc.source)
            index = next((n for n, i in enumerate(original) if cells[i].get("source") == source), index)
        except Exception:
            pass
        where = failing_statement(list(getattr(exc, "traceback", None) or []))
        if where is None:  # no frame in the cell (e.g. a syntax error): the cell's first line
            first = next((line.strip() for line in str(exc.source).splitlines() if line.strip()), "")
            where = (None, first)
        line, statement = where
        at = f", line {line}" if line is not None else ""
        return (f"cell {index + 1}{at} (In [{exc.exec_count}]: {statement[:70]!r}) raised {exc.ename}: "
                f"{str(exc.evalue).strip().splitlines()[0] if str(exc.evalue).strip() else ''}")
    return f"{type(exc).__name__}: {exc}"


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_FRAME = re.compile(r"^(Cell In\s*\[\d*\]|Input In \[\d*\]|<ipython-input-)")
_ARROW = re.compile(r"^\s*-+>\s*(\d+)\s?(.*)$")


def failing_statement(traceback: list[str]) -> tuple[int | None, str] | None:
    """The line number and text of the statement that failed in the notebook cell, from IPython's traceback.

    IPython marks the failing line of each frame with ``---->``; the first frame in the cell
    (``Cell In[n], line k``) is the cell's own statement, even when the error came from deeper.
    """
    lines = _ANSI.sub("", "\n".join(traceback)).splitlines()
    in_cell = False
    for text in lines:
        if _CELL_FRAME.match(text.strip()):
            in_cell = True
            continue
        match = _ARROW.match(text) if in_cell else None
        if match:
            return int(match.group(1)), match.group(2).strip()
    return None


def _quiet_kernel_config(folder: Path) -> Any:
    """Kernels over local IPC sockets in ``folder`` instead of TCP on 127.0.0.1.

    Nothing leaves the machine either way; IPC needs no port and the kernel does not print its
    "running over TCP without encryption" warning for every notebook.
    """
    from traitlets.config import Config

    return Config({"KernelManager": {"transport": "ipc", "ip": str(folder / "kernel")}})


def _html(executed: Path) -> Path:
    """The HTML report of an executed notebook, readable without any network.

    The widget state stays in the executed ``.ipynb``; the HTML shows each output's static form
    instead (every kit panel and the wizard carry a ``text/html`` copy with inlined plots), so it
    needs no widget renderer from a CDN, and no require.js or MathJax either.
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    nb.metadata.pop("widgets", None)  # without state, nbconvert shows the text/html fallback
    exporter = HTMLExporter(template_name="lab")
    exporter.require_js_url = exporter.mathjax_url = ""  # an empty src loads nothing
    body, _ = exporter.from_notebook_node(nb)
    out = executed.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def run_notebooks(notebooks: Sequence[Path] | None = None, params: Mapping[str, Any] | None = None, *,
                  per_notebook: Mapping[str, Mapping[str, Any]] | None = None, smoke: bool = False,
                  out: str | Path = "reports", make_html: bool = True, chain: bool = True,
                  kernel: str = "python3", cell_timeout: int | None = None, echo: bool = True) -> Report:
    """Execute notebooks with papermill and write the report folder.

    Args:
        notebooks: Notebook paths (default: :func:`discover`).
        params: Parameters for every notebook that declares them.
        per_notebook: Parameters for one notebook, by stem.
        smoke: Pass ``smoke=True`` (tiny epochs and trials).
        out: Parent folder of the timestamped report folder.
        make_html: Write an HTML report per notebook.
        chain: Pass the previous notebook's ``bundle_path`` to the next one that declares it.
        kernel: Jupyter kernel name.
        cell_timeout: Seconds one cell may run (``None``: no limit).
        echo: Print one line per notebook.

    Returns:
        The report; ``report.ok`` is False when a notebook failed.

    Raises:
        ConfigError: On an unknown or mistyped parameter (before anything runs).
    """
    pm = require("papermill", "ui")
    notebooks = list(notebooks) if notebooks else discover()
    plans = plan(notebooks, dict(params or {}), dict(per_notebook or {}), smoke)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(out) / stamp
    n = 1
    while folder.exists():
        n += 1
        folder = Path(out) / f"{stamp}-{n}"
    folder.mkdir(parents=True)
    runs: list[NotebookRun] = []
    last_bundle: str | None = None
    began = time.perf_counter()
    sockets = Path(tempfile.mkdtemp(prefix="kit-run-"))  # short: a unix socket path has ~100 bytes
    for i, nb in enumerate(notebooks, 1):
        given = dict(plans[nb])
        decl = parameters(nb)
        output_dir = (folder / nb.stem).resolve()
        if "output_dir" in decl:
            given["output_dir"] = str(output_dir)
        if chain and last_bundle and "bundle_path" in decl and "bundle_path" not in given:
            given["bundle_path"] = last_bundle
        run = NotebookRun(nb.stem, nb, folder / nb.name, None, output_dir, given)
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(run.executed), parameters=given, kernel_name=kernel,
                                progress_bar=False, cwd=str(nb.parent.resolve()), execution_timeout=cell_timeout,
                                config=_quiet_kernel_config(sockets))
            run.ok = True
        except Exception as exc:
            run.error = _failure(exc, run.executed)
        run.seconds = time.perf_counter() - start
        results_file = output_dir / "results.json"
        if results_file.exists():
            run.results = json.loads(results_file.read_text())
            if run.ok and run.results.get("bundle_path"):
                last_bundle = str(run.results["bundle_path"])
        if make_html and run.executed.exists():
            try:
                run.html = _html(run.executed)
            except Exception as exc:
                run.error = (run.error or "") + f" (HTML report failed: {exc})"
        runs.append(run)
        if echo:
            state = f"ok in {run.seconds:.1f} s{_headline(run.results)}" if run.ok else f"FAILED: {run.error}"
            print(f"[{i}/{len(notebooks)}] {nb.name}: {state}", flush=True)
    shutil.rmtree(sockets, ignore_errors=True)
    report = Report(folder, runs, time.perf_counter() - began)
    _write_index(report)
    return report


def _headline(results: Mapping[str, Any]) -> str:
    metric = results.get("primary_metric")
    value = results.get("metrics", {}).get("test", {}).get(metric) if metric else None
    return f" (test {metric} {value:.4f})" if isinstance(value, (int, float)) else ""


def _write_index(report: Report) -> None:
    rows = []
    for r in report.runs:
        link = (f"<a href='{html.escape(r.html.name)}'>{r.name}</a>" if r.html else html.escape(r.name))
        res = (f"<a href='{html.escape(r.name)}/results.json'>results.json</a>"
               if (r.output_dir / "results.json").exists() else "-")
        state = "<b style='color:#2a7'>ok</b>" if r.ok else f"<b style='color:#b00020'>failed</b>: " \
                                                           f"{html.escape(r.error or '')}"
        params = html.escape(", ".join(f"{k}={v}" for k, v in r.parameters.items() if k != "output_dir"))
        rows.append(f"<tr><td>{link}</td><td>{state}</td><td>{r.seconds:.1f}</td>"
                    f"<td>{html.escape(_headline(r.results).strip(' ()'))}</td><td>{res} &middot; "
                    f"<a href='{html.escape(r.executed.name)}'>ipynb</a></td><td><code>{params}</code></td></tr>")
    page = (f"<!doctype html><meta charset='utf-8'><title>kit run {report.folder.name}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
            "text-align:left}</style>"
            f"<h1>kit run {html.escape(report.folder.name)}</h1><p>{len(report.runs)} notebooks in "
            f"{report.seconds:.1f} s: {'all passed' if report.ok else 'FAILED'}</p><table><tr><th>notebook</th>"
            "<th>status</th><th>seconds</th><th>headline</th><th>files</th><th>parameters</th></tr>"
            + "".join(rows) + "</table>")
    report.index.write_text(page, encoding="utf-8")
    summary = {"folder": str(report.folder), "ok": report.ok, "seconds": round(report.seconds, 2),
               "notebooks": [{"name": r.name, "ok": r.ok, "seconds": round(r.seconds, 2), "error": r.error,
                              "executed": str(r.executed), "html": str(r.html) if r.html else None,
                              "output_dir": str(r.output_dir), "parameters": r.parameters} for r in report.runs]}
    (report.folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
