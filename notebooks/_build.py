"""Build the tutorial notebooks from this script (reproducible, reviewable), without outputs.

Run ``.venv/bin/python notebooks/_build.py`` after editing; commit the script and the .ipynb files.
Each notebook has one cell tagged ``parameters`` (typed and commented, so ``papermill
--help-notebook`` documents it) with ``smoke`` and ``output_dir``, and ends by writing
``results.json`` to ``output_dir``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _cells import NOTEBOOKS  # noqa: E402


def build(name: str, cells: list[tuple[str, str]]) -> Path:
    """Write ``name.ipynb`` from ``(kind, source)`` pairs; kind is md, code or params."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source) in enumerate(cells):
        source = source.strip("\n")
        if kind == "md":
            cell = new_markdown_cell(source)
        else:
            cell = new_code_cell(source)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
        cell["id"] = f"{name[:2]}-{i:02d}"
        nb.cells.append(cell)
    path = HERE / f"{name}.ipynb"
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return path


def main() -> None:
    """Write every notebook."""
    for name, cells in NOTEBOOKS.items():
        print(build(name, cells))


if __name__ == "__main__":
    main()
