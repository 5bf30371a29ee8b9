"""``kit run``: execute the notebooks headless with papermill and keep executed reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kit.errors import ConfigError, DataError

NOTEBOOK_DIR = "notebooks"


def read_params_file(path: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Global parameters and per-notebook sections (a key mapping to a dict names a notebook)."""
    import yaml

    file = Path(path)
    if not file.exists():
        raise DataError(f"no such parameters file: {file}", file=str(file))
    data = yaml.safe_load(file.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file.name} must hold a mapping of parameter names to values", field="params")
    per = {str(k): v for k, v in data.items() if isinstance(v, dict)}
    return {k: v for k, v in data.items() if k not in per}, per


def cmd_run(args: argparse.Namespace) -> int:
    """Run the notebooks, print one line each and the total; non-zero exit on a failure."""
    params: dict[str, Any] = {}
    per: dict[str, dict[str, Any]] = {}
    if args.params:
        params, per = read_params_file(args.params)
    for key, value in args.p or []:
        params[key] = value
    from kit.runner import discover, run_notebooks

    notebooks = discover(args.notebooks, Path(args.dir))
    report = run_notebooks(notebooks, params, per_notebook=per, smoke=args.smoke, out=args.out,
                           make_html=not args.no_html, chain=not args.no_chain, kernel=args.kernel,
                           cell_timeout=args.cell_timeout)
    print(f"{len(report.runs)} notebooks in {report.seconds:.1f} s; report: {report.index}")
    failed = [r for r in report.runs if not r.ok]
    for r in failed:
        print(f"kit run: {r.source} failed at {r.error}", file=sys.stderr)
    return 1 if failed else 0


def register(sub: Any) -> None:
    """Add ``kit run`` to the ``kit`` command."""
    p = sub.add_parser("run", help="execute the notebooks headless and write reports",
                       description="Execute notebooks with papermill; write executed notebooks, HTML reports "
                                   "and an index page to OUT/<timestamp>/; exit 1 naming the notebook and cell "
                                   "that failed. Unknown parameters are an error.")
    p.add_argument("--smoke", action="store_true", help="tiny epochs and trials (passes smoke=True)")
    p.add_argument("-p", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="a parameter for every notebook that declares it (repeatable)")
    p.add_argument("--params", metavar="FILE.yaml",
                   help="parameters from YAML; a key naming a notebook (e.g. 02_tune) holds its own parameters")
    p.add_argument("--notebooks", nargs="+", metavar="NB", help="notebooks to run: paths, stems or prefixes (01)")
    p.add_argument("--dir", default=NOTEBOOK_DIR, help="where notebook names are looked up (default notebooks)")
    p.add_argument("--out", default="reports", help="parent folder of the report (default reports)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML reports")
    p.add_argument("--no-chain", action="store_true", help="do not pass a notebook's bundle to the next one")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    p.add_argument("--cell-timeout", type=int, default=None, help="seconds one cell may run")
    p.set_defaults(func=cmd_run)
