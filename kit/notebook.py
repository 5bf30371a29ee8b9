"""What the step notebooks share: where they write and which model they start from.

Each step notebook can run on its own or continue from the previous one. Its first cell calls
:func:`output_folder` (so the default ``runs/<notebook>`` lands in the project folder whether Jupyter,
papermill or ``kit run`` started it from ``notebooks/`` or from the project root) and
:func:`load_or_train` (the bundle saved at ``bundle_path``, else a fresh model trained on ``data``)::

    output_dir = output_folder(output_dir, "03_explain")
    bundle = load_or_train(bundle_path, data, target, smoke=smoke)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kit.config import DataConfig, TrainConfig

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

PROJECT_MARKERS = ("pyproject.toml", ".git")
"""A folder holding one of these is a project root (see :func:`project_root`)."""


def project_root(start: str | Path | None = None) -> Path:
    """The project folder, where the default ``runs/`` goes.

    That is the nearest of ``start`` (default: the current folder) and its parents that holds a
    ``pyproject.toml`` or ``.git``; ``start`` itself when none does.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return here


def output_folder(output_dir: str | Path, notebook: str) -> Path:
    """The folder a notebook writes to, created if missing.

    Args:
        output_dir: The notebook's ``output_dir`` parameter: a path (absolute, or relative to the
            current folder), or empty for the default.
        notebook: The notebook's name, e.g. ``"02_tune"``.

    Returns:
        ``output_dir`` when given; else ``runs/<notebook>`` in :func:`project_root`. The default
        therefore does not depend on whether the kernel runs in ``notebooks/`` (Jupyter, ``kit
        run``) or in the project root (``papermill notebooks/02_tune.ipynb out.ipynb``).
    """
    folder = Path(output_dir) if str(output_dir) else project_root() / "runs" / notebook
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def load_or_train(bundle_path: str | Path = "", data: str = "breast_cancer", target: str = "", *,
                  smoke: bool = False, train: TrainConfig | None = None) -> ModelBundle:
    """The model a step notebook starts from: the bundle saved at ``bundle_path``, else a new one.

    With a ``bundle_path`` (what ``01_data_train`` or the previous notebook saved; ``kit run`` passes
    it along) the bundle is loaded, every file's sha256 checked. Without one, a model is trained
    on ``data`` with the default :class:`~kit.config.TrainConfig` (``train`` to change it; the
    smoke profile when ``smoke``), so the notebook also runs on its own. Prints which it did.

    Args:
        bundle_path: A saved bundle directory, or empty.
        data: A built-in dataset name or a CSV/Parquet path, used when ``bundle_path`` is empty.
        target: The target column of ``data`` (needed for files; empty for built-ins).
        smoke: Train with :data:`kit.config.SMOKE` (tiny epochs, for CI).
        train: Training settings when a model is trained here.

    Returns:
        The bundle.

    Raises:
        IntegrityError: If a file of the saved bundle is missing or changed.
        DataError: If ``data`` cannot be loaded (naming the file, column or row).
    """
    from kit.bundle import ModelBundle
    from kit.train import train as train_model

    if str(bundle_path):
        bundle = ModelBundle.load(bundle_path)
        print(f"loaded the bundle at {bundle_path}: {bundle!r}")
        return bundle
    config = (train or TrainConfig()).smoke_if(smoke)
    bundle = train_model(DataConfig(source=data, target=target or None), config, progress=True).bundle
    print(f"no bundle_path: trained a new model on {data} ({config.epochs} epochs at most): {bundle!r}")
    return bundle
