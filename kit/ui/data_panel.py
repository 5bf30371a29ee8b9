"""Data panel: a built-in dataset, a file (path or upload) or an image folder, target, task, split; the summary.

An image folder (class sub-folders of PNG/JPEG files) or ``digits_images`` loads as images; the plot
is then a grid of samples with their labels instead of the class balance.
"""

from __future__ import annotations

import html
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from kit.config import DataConfig
from kit.data import BUILTINS, IMAGE_BUILTINS, ImageDataset
from kit.errors import DataError
from kit.ui._base import LAYOUT, STYLE, Panel, table_html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from kit.data import Dataset

FILE = "(file path or upload)"  # a file path or an image folder
SOURCES = [*BUILTINS, *IMAGE_BUILTINS]


class DataPanel(Panel):
    """Choose and load the data; shows rows, columns, missing values and the class balance."""

    title = "Data"
    step = "data"
    action = "Load data"

    def controls(self) -> list[Any]:
        """Source, path, upload, target, task and split controls."""
        cfg = self.session.data_config
        builtin = cfg.source in SOURCES
        self.source = widgets.Dropdown(options=[*SOURCES, FILE], value=cfg.source if builtin else FILE,
                                       description="dataset", style=STYLE, layout=LAYOUT)
        self.path = widgets.Text(value="" if builtin else cfg.source,
                                 placeholder="data/my.csv, .parquet or a folder of images",
                                 description="file path", style=STYLE, layout=LAYOUT)
        self.upload = widgets.FileUpload(accept=".csv,.parquet,.pq", multiple=False, description="upload")
        self.target = widgets.Text(value=cfg.target or "", placeholder="target column (files only)",
                                   description="target", style=STYLE, layout=LAYOUT)
        self.task = widgets.Dropdown(options=["auto", "binary", "multiclass", "regression"], value=cfg.task,
                                     description="task", style=STYLE, layout=LAYOUT)
        self.valid_size = widgets.FloatSlider(value=cfg.valid_size, min=0.05, max=0.4, step=0.05,
                                              description="valid share", style=STYLE, layout=LAYOUT)
        self.test_size = widgets.FloatSlider(value=cfg.test_size, min=0.05, max=0.4, step=0.05,
                                             description="test share", style=STYLE, layout=LAYOUT)
        self.seed = widgets.IntText(value=cfg.seed, description="split seed", style=STYLE, layout=LAYOUT)
        self.upload.observe(self._uploaded, names="value")
        return [self.source, widgets.HBox([self.path, self.upload]), self.target, self.task,
                self.valid_size, self.test_size, self.seed]

    def config(self) -> DataConfig:
        """The DataConfig the controls describe (validated).

        Raises:
            DataError: When "file" is chosen without a path.
        """
        if self.source.value == FILE:
            if not self.path.value.strip():
                raise DataError("choose a built-in dataset, type a file or image folder path, or upload a file",
                                field="source")
            source = self.path.value.strip()
        else:
            source = str(self.source.value)
        return self.session.data_config.replace(
            source=source, target=self.target.value.strip() or None, task=self.task.value,
            valid_size=round(float(self.valid_size.value), 4), test_size=round(float(self.test_size.value), 4),
            seed=int(self.seed.value))

    def _uploaded(self, change: dict[str, Any]) -> None:
        """Save an uploaded file under ``output_dir/uploads`` and point the path box at it."""
        files = change["new"]
        if not files:
            return
        item = files[0]
        folder = self.session.output_dir / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(str(item["name"])).name
        path.write_bytes(bytes(item["content"]))
        self.path.value, self.source.value = str(path), FILE
        self._say(f"uploaded {path.name} ({path.stat().st_size} bytes); set the target column and load it")

    def work(self, cancel: threading.Event) -> Dataset:
        """Load and split the data into the session; a failure clears what the panel showed."""
        try:
            return self.session.load_data(self.config())
        except Exception:
            self.clear()
            raise

    def clear(self) -> None:
        """Show nothing of a previous dataset (after a failed load)."""
        self.table.value = ""
        self.plot.value = b""
        self.plot.layout.display = "none"

    def depends_on(self) -> tuple[str, ...]:
        """Re-render when data is (re)loaded elsewhere (e.g. from a bundle)."""
        return ("data",)

    def render(self) -> None:
        """Show the summary: shape, split sizes, per-column table and class balance."""
        ds, splits = self.session.dataset, self.session.splits
        if ds is None or splits is None:
            self.clear()
            return
        summary = ds.summary()
        head = (f"<p><b>{ds.name}</b>: {summary.rows} rows, {summary.features} features, target "
                f"<code>{ds.target}</code> ({ds.task}); split train {len(splits.train)} / valid "
                f"{len(splits.valid)} / test {len(splits.test)}; "
                f"{int(summary.columns['missing'].sum())} missing values</p>")
        cols = summary.columns.reset_index()[["column", "role", "kind", "dtype", "missing", "unique", "mean"]]
        rows = [{str(k): "" if v is None or (isinstance(v, float) and math.isnan(v)) else v for k, v in r.items()}
                for r in cols.to_dict("records")]  # text columns have no mean: an empty cell, not nan
        note = (f"<p style='color:#8a6d00'>{html.escape(summary.constant_note)}</p>" if summary.constant else "")
        self.table.value = (head + note + "<div style='max-height:260px;overflow:auto'>" + table_html(rows, 60)
                            + "</div>")

    def draw(self, fig: Figure) -> bool:
        """Class balance (classification) or the target's histogram (regression)."""
        ds = self.session.dataset
        if ds is None:
            return False
        if isinstance(ds, ImageDataset):
            return _sample_grid(fig, ds)
        ax = fig.add_subplot()
        y = ds.frame[ds.target]
        if ds.task == "regression":
            ax.hist(y.to_numpy(dtype=float), bins=30, color="#4c72b0")
            ax.set_xlabel(ds.target)
            ax.set_ylabel("rows")
        else:
            counts = y.value_counts()
            ax.bar([str(c) for c in counts.index], counts.to_numpy(), color="#4c72b0")
            ax.set_ylabel("rows")
        ax.set_title(f"{ds.name}: target {ds.target!r}")
        return True


def _sample_grid(fig: Figure, ds: ImageDataset, count: int = 16) -> bool:
    """Up to ``count`` images, drawn at random (seeded), each titled with its label."""
    import numpy as np

    picked = np.random.default_rng(0).choice(len(ds.images), min(count, len(ds.images)), replace=False)
    cols = min(8, len(picked))
    rows = math.ceil(len(picked) / cols)
    for k, i in enumerate(picked):
        ax = fig.add_subplot(rows, cols, k + 1)
        pixels = ds.images[i]
        ax.imshow(pixels[..., 0] if ds.channels == 1 else pixels, cmap="gray")
        ax.set_title(str(ds.frame[ds.target].iloc[i]), fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{ds.name}: {len(ds.images)} images of {ds.image_size[0]}x{ds.image_size[1]}x{ds.channels}")
    return True
