"""``load`` and ``resolve``: one entry point for every kind of data (tables and images)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kit.config import DataConfig
from kit.data._dataset import Dataset
from kit.data.image import ImageDataset, is_image_source, load_images
from kit.data.tabular import load_table
from kit.preprocess import ImagePreprocessor, Preprocessor


def load(
    source: str | Path | pd.DataFrame | DataConfig = "breast_cancer",
    target: str | None = None,
    task: str = "auto",
) -> Dataset:
    """Load a built-in dataset, a CSV/Parquet file, a DataFrame or a folder of images.

    A folder whose sub-folders are class names holding PNG/JPEG files (the ImageFolder layout),
    or the built-in ``digits_images``, loads as an :class:`~kit.data.image.ImageDataset`; a
    :class:`DataConfig` with ``kind="image"`` or ``"table"`` overrides the detection.

    Memory of an image folder: the pixels are decoded once into one uint8 array (height x width x
    channels bytes per image), at most ``DataConfig.max_image_mb`` (4096 MB by default: a larger
    folder is refused before decoding), plus about 0.8 KB per image for its name, label and row.
    Measured on 50,000 8x8 PNG files: a peak of 337 MiB, of which 289 MiB is the imports
    (``bench/images_folder.py``).

    Args:
        source: Built-in name, file path, image folder, DataFrame, or a :class:`DataConfig`.
        target: Target column (required for files and frames; ``label`` for images).
        task: ``auto`` to detect, or ``binary`` / ``multiclass`` / ``regression`` to override.

    Returns:
        The dataset with its task and labels.

    Raises:
        DataError: On an unknown name, unreadable or empty file, missing target column,
            all-missing column, text in a numeric column, or a target unfit for the task; for
            images, naming the file or folder (see :func:`kit.data.image.load_images`).
    """
    config = source if isinstance(source, DataConfig) else None
    raw = config.source if config is not None else source
    kind = config.kind if config is not None else "auto"
    if not isinstance(raw, pd.DataFrame) and is_image_source(raw, kind):
        return load_images(config or DataConfig(source=str(raw), target=target, task=task, kind="image"))
    return load_table(source, target, task)


DataLike = Dataset | DataConfig | str | Path | pd.DataFrame
"""What a step accepts as data: a loaded Dataset, a DataConfig, a built-in name, a file path, an image folder or a
DataFrame."""


def resolve(data: DataLike, config: DataConfig | None = None) -> tuple[Dataset, DataConfig]:
    """Turn any accepted data argument into a dataset and the DataConfig that loads and splits it.

    Args:
        data: A :class:`Dataset`, a :class:`~kit.config.DataConfig`, a built-in name, a file path, an
            image folder or a DataFrame.
        config: Split and loading settings for a name, path or frame (its ``source`` is replaced),
            or for a Dataset loaded by hand; ignored when ``data`` is a DataConfig.

    Returns:
        The dataset and its config (``dataset.config`` is set to it). For images the config says what
        was found (``kind="image"``, the channels), so loading it again gives the same pixels.
    """
    if isinstance(data, DataConfig):
        dataset = load(data)
        return dataset, dataset.config if isinstance(dataset, ImageDataset) and dataset.config else data
    if isinstance(data, Dataset):
        chosen = config or data.config or DataConfig(source=data.name, target=data.target, task=data.task)
        data.config = data.config or chosen
        return data, chosen
    base = config or DataConfig()
    if isinstance(data, pd.DataFrame):
        dataset = load(data, base.target, base.task)
        chosen = base.replace(source="dataframe", target=dataset.target, task=base.task)
    else:
        chosen = base.replace(source=str(data))
        dataset = load(chosen)
        if isinstance(dataset, ImageDataset) and dataset.config is not None:
            chosen = dataset.config
    dataset.config = chosen
    return dataset, chosen


def preprocessor_for(dataset: Dataset, config: DataConfig) -> Preprocessor:
    """The unfitted preprocessor for a dataset's kind: tabular, or image with the config's size, channels, resize."""
    if isinstance(dataset, ImageDataset):
        return ImagePreprocessor(config.image_size, config.channels or dataset.channels, config.resize)
    return Preprocessor(config.unknown_category)
