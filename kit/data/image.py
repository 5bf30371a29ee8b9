"""Images: a folder of class sub-folders (the ImageFolder layout) or the ``digits_images`` built-in.

A folder ``root/<class>/<file>`` becomes an :class:`ImageDataset`: one row per file, the class
folder's name as its label. Every non-hidden file under a class folder must be a PNG or JPEG (a
stray file is named, not skipped). Decoding is two passes: the headers first (sizes, grayscale or
colour, the memory the pixels will take; cheap), then the pixels, straight into one uint8 array
``(n, height, width, channels)``.

Memory: the decoded pixels are held once, as uint8 (``height x width x channels`` bytes per image:
50,000 RGB images of 32x32 take 154 MB, of 64x64 615 MB); a folder that would take more than
``DataConfig.max_image_mb`` (4096 MB by default) is refused before decoding. Each image also keeps
about 0.8 KB (its file name, label and the frame's row). Training turns one batch at a time into
float32, so it adds about one copy of the training split's uint8 pixels. Measured with
``bench/images_folder.py`` on 50,000 8x8 PNG files: load peaks at 337 MiB and one epoch of
training at 538-558 MiB, of which 289 MiB is the imports.

``digits_images`` is scikit-learn's 8x8 digits (1,797 images, shipped inside scikit-learn, nothing
downloaded) as grayscale pixels 0-255, labels ``"0"`` to ``"9"``: the same pictures a folder of PNG
files named by digit gives.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kit.config import DataConfig
from kit.data._dataset import Dataset
from kit.errors import DataError
from kit.preprocess.image import FEATURE, GRAY_MODES, ImageProblem, decode_image, open_image
from kit.summary import DataSummary

IMAGE_BUILTINS: dict[str, str] = {"digits_images": "multiclass"}
"""Built-in image datasets and their tasks."""
TARGET = "label"
"""The target column of an image dataset: the class folder's name."""
MAX_IMAGE_CLASSES = 1000


@dataclass
class ImageDataset(Dataset):
    """Images with their labels; ``frame`` has an ``image`` column (uint8 arrays) and ``label``.

    Attributes:
        images: Every image's pixels, uint8 ``(n, height, width, channels)`` (the frame's ``image``
            cells are views of it).
        files: Each row's file, relative to the folder (``<class>/<name>``).
        sizes: Each file's own ``(height, width)`` before resizing, int ``(n, 2)``.
        root: The folder (``None`` for a built-in).
    """

    images: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 1), dtype=np.uint8), repr=False)
    files: list[str] = field(default_factory=list, repr=False)
    sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64), repr=False)
    root: Path | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the decoded images."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def channels(self) -> int:
        """1 (grayscale) or 3 (RGB)."""
        return int(self.images.shape[3])

    @property
    def data_hash(self) -> str:
        """sha256 of the decoded pixels, the labels and the file names (recorded in lineage)."""
        if self._hash is None:
            digest = hashlib.sha256()
            digest.update(f"{self.images.shape}".encode())
            digest.update(np.ascontiguousarray(self.images).tobytes())
            digest.update("\x1f".join(map(str, self.frame[self.target])).encode())
            digest.update("\x1f".join(self.files).encode())
            self._hash = digest.hexdigest()
        return self._hash

    def summary(self) -> DataSummary:
        """Images, their size and channels, the pixel intensity, and the class balance."""
        h, w = self.image_size
        columns = pd.DataFrame([{
            "column": FEATURE, "role": "feature", "dtype": f"uint8 {h}x{w}x{self.channels}", "kind": "image",
            "missing": 0, "unique": None, "mean": float(self.images.mean()) if len(self.images) else None,
            "min": int(self.images.min()) if len(self.images) else None,
            "max": int(self.images.max()) if len(self.images) else None,
        }, {"column": self.target, "role": "target", "dtype": "object", "kind": "categorical", "missing": 0,
            "unique": int(self.frame[self.target].nunique()), "mean": None, "min": None, "max": None}])
        balance = self.frame[self.target].value_counts().rename("rows").to_frame()
        balance["share"] = balance["rows"] / balance["rows"].sum()
        return DataSummary(self.name, self.task, self.target, len(self.frame), 1, columns.set_index("column"),
                           balance, {})


def is_image_source(source: Any, kind: str = "auto") -> bool:
    """Whether ``source`` (with the config's ``kind``) loads as images: a folder or an image built-in."""
    if kind != "auto":
        return kind == "image"
    if isinstance(source, str) and source in IMAGE_BUILTINS:
        return True
    return isinstance(source, str | Path) and Path(source).is_dir()


def _digits() -> tuple[list[np.ndarray], list[str], list[str]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.round(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    labels = [str(int(t)) for t in bunch.target]
    files = [f"{label}/{i:04d}.png" for i, label in enumerate(labels)]
    return list(pixels), labels, files


def _scan(root: Path) -> tuple[list[Path], list[str]]:
    """Every image file under the class folders of ``root``, and its class."""
    if not root.exists():
        raise DataError(f"no such folder: {root}", file=str(root))
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; an image dataset is a folder with one sub-folder per class",
                        file=str(root))
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        loose = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
        raise DataError(f"{root} holds no images in class sub-folders ({len(loose)} files at the top level); put "
                        "each class's images in a sub-folder named after the class", file=str(root))
    files: list[Path] = []
    labels: list[str] = []
    for folder in classes:
        found = sorted(p for p in folder.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        if not found:
            raise DataError(f"class folder {folder.name!r} in {root} holds no images", file=str(folder))
        files.extend(found)
        labels.extend([folder.name] * len(found))
    if len(classes) < 2:
        raise DataError(f"{root} has a single class {classes[0].name!r}; a classifier needs at least two class "
                        "sub-folders", file=str(root))
    if len(classes) > MAX_IMAGE_CLASSES:
        raise DataError(f"{root} has {len(classes)} class folders (more than {MAX_IMAGE_CLASSES})", file=str(root))
    return files, labels


def _plan(items: list[Any], names: list[str], root: Path | None, config: DataConfig
          ) -> tuple[tuple[int, int], int]:
    """The decoded size and channels, from the headers; refuses mixed sizes without resizing, or too much memory."""
    gray, first_size, first_name = True, None, ""
    for item, name in zip(items, names, strict=True):
        try:
            if isinstance(item, np.ndarray):
                size, is_gray = (int(item.shape[0]), int(item.shape[1])), item.ndim == 2 or item.shape[-1] == 1
            else:
                img = open_image(item)
                size, is_gray = (img.size[1], img.size[0]), img.mode in GRAY_MODES
                img.close()
        except ImageProblem as exc:
            raise DataError(f"{name} {exc}", file=str(item if root is None else root / name)) from None
        gray = gray and is_gray
        if first_size is None:
            first_size, first_name = size, name
        elif config.image_size is None and size != first_size:
            raise DataError(f"{name} is {size[0]}x{size[1]} (height x width) but {first_name} is "
                            f"{first_size[0]}x{first_size[1]}; pass DataConfig(image_size=(height, width)) to "
                            "resize every image to one size", file=str(root / name if root else name))
    assert first_size is not None
    size = config.image_size or first_size
    channels = config.channels or (1 if gray else 3)
    need = len(items) * size[0] * size[1] * channels
    if need > config.max_image_mb * 2**20:
        raise DataError(f"{len(items):,} images of {size[0]}x{size[1]}x{channels} take {need / 2**20:,.0f} MB "
                        f"decoded, more than max_image_mb={config.max_image_mb}; pass a smaller image_size or "
                        "raise max_image_mb", field="max_image_mb")
    return size, channels


def load_images(config: DataConfig) -> ImageDataset:
    """Load an image folder or an image built-in as its config says (size, channels, resize policy).

    Raises:
        DataError: Naming the file or folder: a missing folder, no class sub-folders, an empty class
            folder, a single class, a file that is not a PNG/JPEG or is truncated, mixed sizes when
            ``image_size`` is not given, or more pixels than ``max_image_mb`` allows.
    """
    source = config.source
    root: Path | None = None
    if source in IMAGE_BUILTINS:
        items, labels, names = _digits()
        items_any: list[Any] = list(items)
        name = source
    else:
        root = Path(source)
        paths, labels = _scan(root)
        items_any = list(paths)
        names = [p.relative_to(root).as_posix() for p in paths]
        name = root.name
    size, channels = _plan(items_any, names, root, config)
    images = np.empty((len(items_any), *size, channels), dtype=np.uint8)
    sizes = np.empty((len(items_any), 2), dtype=np.int64)
    for i, item in enumerate(items_any):
        try:
            images[i], original = decode_image(item, channels, size, config.resize)
        except ImageProblem as exc:
            raise DataError(f"{names[i]} {exc}", file=str(root / names[i] if root else names[i])) from None
        sizes[i] = original
    classes = sorted(set(labels))
    task = config.task if config.task != "auto" else ("binary" if len(classes) == 2 else "multiclass")
    if task == "regression" or (task == "binary" and len(classes) != 2):
        raise DataError(f"task {task!r} does not fit {len(classes)} image classes; use auto", field="task")
    target = config.target or TARGET
    cells = np.empty(len(images), dtype=object)
    cells[:] = list(images)  # views of the one array: splits share its memory
    frame = pd.DataFrame({FEATURE: cells, target: labels})
    chosen = config.replace(kind="image", target=target, task=task, channels=channels)
    return ImageDataset(frame, target, task, name, classes, chosen, images=images, files=names, sizes=sizes,
                        root=root)
