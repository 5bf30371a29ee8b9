"""Loading a bundle's training data again, split exactly as in training (one policy for every step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kit.config import DataConfig
from kit.errors import DataError

if TYPE_CHECKING:
    from kit.bundle import ModelBundle
    from kit.data import DataLike, Dataset, Splits


@dataclass
class BundleData:
    """The data a bundle was trained on, loaded again and split as in training.

    Attributes:
        dataset: The loaded dataset.
        config: How it was loaded and split (the bundle's own split settings).
        splits: Train / valid / test, the same rows as in training when the data is unchanged.
        matches_lineage: Whether the data's hash equals the one recorded at training time.
    """

    dataset: Dataset
    config: DataConfig
    splits: Splits
    matches_lineage: bool



def reload(bundle: ModelBundle, data: DataLike | None = None) -> BundleData:
    """:meth:`kit.bundle.ModelBundle.reload_data` (see there)."""
    from kit.data import resolve

    stored = bundle.data_config
    if data is None and stored.source == "dataframe":
        raise DataError("this bundle was trained on an in-memory DataFrame; pass the same data as data=",
                        field="data")
    if isinstance(data, DataConfig):
        dataset, _ = resolve(data)
    elif data is not None:
        dataset, _ = resolve(data, stored)
    else:
        dataset, _ = resolve(stored)
    recorded = bundle.lineage.get("data_hash")
    matches = recorded in (None, dataset.data_hash)
    if data is None and not matches:
        raise DataError(f"the data {stored.source!r} changed since this model was trained (sha256 "
                        f"{dataset.data_hash[:12]} != {str(recorded)[:12]}), so its test split is not the one "
                        "the model was evaluated on; pass the data explicitly to use it anyway",
                        field="source", file=stored.source)
    if dataset.target != bundle.target or dataset.task != bundle.task:
        raise DataError(f"the data is a {dataset.task} task on {dataset.target!r} but the bundle predicts "
                        f"{bundle.target!r} ({bundle.task})", field="data")
    config = stored.replace(source=dataset.config.source if dataset.config else stored.source)
    splits = dataset.split(stored.valid_size, stored.test_size, stored.seed)
    return BundleData(dataset, config, splits, matches)
