"""Datasets: tables (built-ins, CSV/Parquet, DataFrames) and images (class folders, ``digits_images``), and splits.

Nothing is downloaded: the built-ins ship inside scikit-learn. :func:`load` detects the kind;
``DataConfig(kind=...)`` overrides it. Modules: ``_dataset`` (:class:`Dataset`, :class:`Part`,
:class:`Splits`: what every kind loads into), ``tabular`` (tables), ``image`` (image folders),
``_load`` (:func:`load`, :func:`resolve`).
"""

from __future__ import annotations

from kit.data._dataset import Dataset, Part, Splits
from kit.data._load import DataLike, load, preprocessor_for, resolve
from kit.data.image import IMAGE_BUILTINS, ImageDataset, is_image_source, load_images
from kit.data.tabular import BUILTINS, MAX_CLASSES, detect_task, load_table
from kit.summary import DataSummary

__all__ = ["BUILTINS", "IMAGE_BUILTINS", "MAX_CLASSES", "DataLike", "DataSummary", "Dataset", "ImageDataset", "Part",
           "Splits", "detect_task", "is_image_source", "load", "load_images", "load_table",
           "preprocessor_for", "resolve"]
