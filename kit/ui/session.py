"""The one shared state that the panels of the wizard read and write.

A :class:`Session` holds what each step produced (dataset, splits, training result, bundle,
tuning study, explanation, quantization report, packaged tag, server). Panels never pass
results to each other directly: a step stores its output here and calls :meth:`Session.notify`,
and every panel listening re-renders. The session knows nothing about widgets, so notebooks and
tests use it headless too.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.config import MLP_FIELDS, DataConfig, ExplainConfig, GateConfig, QuantizeConfig, TrainConfig, TuneConfig
from kit.errors import DataError
from kit.results import notebook_results, write_results

if TYPE_CHECKING:
    from kit.bundle import ModelBundle
    from kit.data import Dataset, Splits
    from kit.train import TrainResult

Listener = Callable[[str], None]

CHANGES = {"train": "the model was retrained", "tune": "the tuned model was adopted",
           "quantize": "the runtime variant changed", "explain": "an explanation was attached to the model",
           "gate": "a gate run was recorded in the model", "bundle": "another model was loaded"}
"""Why a new current model makes the stored one stale, by session event."""


@dataclass
class Session:
    """State shared by the panels of one wizard (or one notebook).

    Attributes:
        data_config: How the data is loaded and split.
        train_config: Training settings (the Train panel edits it; "use best parameters" replaces it).
        tune_config: Tuning settings the Tune panel starts from.
        explain_config: Explanation settings the Explain panel starts from.
        quantize_config: Quantization settings the Quantize panel starts from.
        gate_config: Release-gate thresholds the Gate panel starts from.
        output_dir: Where bundles, uploads and ``results.json`` are written.
        smoke: Tiny epochs/trials everywhere (CI): every step config gets :data:`kit.config.SMOKE`.
        dataset: The loaded dataset, once the Data step ran.
        splits: Its train/valid/test splits.
        result: The last training result.
        bundle: The current model bundle (trained, tuned, quantized ...).
        bundle_path: Where the current bundle was last saved.
        artifacts: Other files a step wrote (name -> path).
        outputs: Each step's JSON-able summary (step -> dict), merged into ``results.json``.
        objects: Each step's rich result (tuning result, explanation, quantization report ...).
        tags: Names a step registered elsewhere (e.g. the model store tag); a new model clears them.
        version: Counts every change of the current model (or of the data under it); a stored
            tag or a running server belongs to one version.
        stale: Why the last stored model is no longer the current one (empty when it is).
        data_error: Why the last data load failed (empty after a good load).

    Loading another kind of data (images after a table, or back) keeps the network a builder that
    takes it: a table network gives way to ``cnn`` (:data:`kit.nets.DEFAULTS`), and the network and
    parameters used for the other kind come back when that kind is loaded again.
    """

    data_config: DataConfig = field(default_factory=DataConfig)
    train_config: TrainConfig = field(default_factory=TrainConfig)
    tune_config: TuneConfig = field(default_factory=TuneConfig)
    explain_config: ExplainConfig = field(default_factory=ExplainConfig)
    quantize_config: QuantizeConfig = field(default_factory=QuantizeConfig)
    gate_config: GateConfig = field(default_factory=GateConfig)
    output_dir: Path = field(default_factory=lambda: Path("runs") / "wizard")
    smoke: bool = False
    dataset: Dataset | None = None
    splits: Splits | None = None
    result: TrainResult | None = None
    bundle: ModelBundle | None = None
    bundle_path: Path | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    version: int = 0
    stale: str = ""
    data_error: str = ""
    _nets: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _listeners: list[Listener] = field(default_factory=list, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        if self.smoke:
            self.train_config, self.tune_config = self.train_config.smoke(), self.tune_config.smoke()
            self.explain_config, self.quantize_config = self.explain_config.smoke(), self.quantize_config.smoke()
            self.gate_config = self.gate_config.smoke()
        if self.data_kind == "image":  # images named up front: cnn from the start (tables need no torch import yet)
            self._fit_network("image")

    # -- events ----------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(what)`` whenever a step changes the session (``what`` names the step)."""
        self._listeners.append(listener)

    def notify(self, what: str) -> None:
        """Tell every listener that ``what`` changed; a failing listener never breaks the step."""
        for listener in list(self._listeners):
            with contextlib.suppress(Exception):  # a display problem must not abort the work
                listener(what)

    # -- steps -------------------------------------------------------------------------------------
    def load_data(self, config: DataConfig | None = None) -> Dataset:
        """Load and split the data and store both.

        Args:
            config: Replaces :attr:`data_config` when given.

        Returns:
            The dataset.

        A failed load leaves no dataset behind (the panels must not show the previous data as if
        it were the new file's); a loaded dataset other than the current model's data drops that
        model, and with it any stored tag.

        Raises:
            DataError: What :func:`kit.load` raises (also kept in :attr:`data_error`).
        """
        from kit.data import load

        config = config or self.data_config
        try:
            dataset = load(config)
            splits = dataset.split(config.valid_size, config.test_size, config.seed)
        except Exception as exc:
            with self._lock:
                self.dataset, self.splits, self.data_error = None, None, str(getattr(exc, "message", exc))
            self.notify("data")
            raise
        with self._lock:
            same = self.bundle is not None and _same_data(self.bundle, dataset.data_hash, config)
            self.data_config, self.dataset, self.splits, self.data_error = config, dataset, splits, ""
            self.result = None
            self._fit_network(self.data_kind)
            if not same and self.bundle is not None:
                self.bundle, self.bundle_path = None, None
                self._invalidate(f"the data changed to {dataset.name}")
        self.notify("data")
        return dataset

    @property
    def data_kind(self) -> str:
        """``image`` or ``table``: the loaded data's kind, else the current model's, else :attr:`data_config`'s."""
        from kit.data import ImageDataset
        from kit.data.image import is_image_source

        if self.dataset is not None:
            return "image" if isinstance(self.dataset, ImageDataset) else "table"
        if self.bundle is not None:
            return self.bundle.kind
        return "image" if is_image_source(self.data_config.source, self.data_config.kind) else "table"

    def _fit_network(self, kind: str) -> None:
        """Make :attr:`train_config`'s network one that takes ``kind`` input (see the class docstring)."""
        from kit import nets
        from kit.errors import KitError

        try:
            inputs = nets.resolve(self.train_config.net).inputs
        except KitError:  # a builder that cannot be imported now: training will say so, naming it
            return
        if inputs is None or kind in inputs:
            return
        for other in inputs:  # remembered for when that kind of data comes back
            self.keep_network(self.train_config, other)
        default: dict[str, Any] = {"net": nets.DEFAULTS[kind], "net_params": {}, **dict.fromkeys(MLP_FIELDS)}
        self.train_config = self.train_config.replace(**self._nets.get(kind, default))

    def keep_network(self, config: TrainConfig, kind: str) -> None:
        """Remember ``config``'s network and parameters as the ones to restore when ``kind`` data comes back."""
        self._nets[kind] = {f: getattr(config, f) for f in ("net", "net_params", *MLP_FIELDS)}

    def require_data(self) -> Dataset:
        """The loaded dataset, loading :attr:`data_config` first if needed."""
        return self.dataset if self.dataset is not None else self.load_data()

    def require_bundle(self) -> ModelBundle:
        """The current bundle.

        Raises:
            DataError: If no step has produced a bundle yet.
        """
        if self.bundle is None:
            raise DataError("no model yet: run the Train step (or pass a bundle path) first", field="bundle")
        return self.bundle

    def set_result(self, result: TrainResult) -> None:
        """Store a training result and make its bundle current."""
        with self._lock:
            self.result = result
        self.set_bundle(result.bundle, "train")

    def set_bundle(self, bundle: ModelBundle, what: str = "bundle", save: bool = True) -> Path | None:
        """Make ``bundle`` current and (by default) save it under ``output_dir/bundles/<what>``.

        A new current model invalidates the stored tag and bento (they hold the previous one), so
        the Package step stores this one before it serves; :attr:`stale` says why.
        """
        path = None
        if save:
            path = bundle.save(self.output_dir / "bundles" / what)
        with self._lock:
            if bundle is not self.bundle:
                self._invalidate(CHANGES.get(what, f"the model changed ({what})"))
            self.bundle = bundle
            if path is not None:
                self.bundle_path = path
                self.artifacts[f"bundle_{what}"] = str(path)
            if self.result is not None and what != "train" and self.result.bundle.history != bundle.history:
                self.result = None  # another training run: its curves must not show beside this model
        self.notify(what)
        return path

    def _invalidate(self, why: str) -> None:
        """A new model version: forget the stored tag and bento, and say why (the lock is held)."""
        self.version += 1
        stored = self.tags.pop("model", None)
        self.tags.pop("bento", None)
        self.outputs.pop("package", None)  # what was stored and checked was the previous model
        if stored is not None:
            self.stale = f"{why} after {stored} was stored: that tag (and any server started from it) " \
                         "holds the previous model; Save to store the current one"

    def store(self, tag: str, bento: str | None = None) -> None:
        """Record the tag (and bento) that hold the current model version."""
        with self._lock:
            self.tags["model"] = tag
            if bento is not None:
                self.tags["bento"] = bento
            self.stale = ""

    def load_bundle(self, path: str | Path) -> ModelBundle:
        """Continue from a saved bundle (e.g. the previous notebook's); its data config is reloaded."""
        from kit.bundle import ModelBundle

        bundle = ModelBundle.load(path)
        loaded = bundle.reload_data()  # the same rows and split as in training (a changed file is refused)
        train = bundle.configs.get("train")
        with self._lock:
            self.data_config, self.dataset, self.splits = loaded.config, loaded.dataset, loaded.splits
            self.result, self.data_error = None, ""
            if train:
                self.train_config = TrainConfig.from_dict(train)
            self._invalidate(CHANGES["bundle"])
            self.bundle, self.bundle_path = bundle, Path(path)
        self.notify("data")
        self.notify("bundle")
        return bundle

    def record(self, step: str, summary: dict[str, Any], obj: Any = None) -> None:
        """Store a step's JSON-able summary (and optionally its rich result) and notify."""
        with self._lock:
            self.outputs[step] = summary
            if obj is not None:
                self.objects[step] = obj
        self.notify(step)

    # -- results -----------------------------------------------------------------------------------
    def results(self, notebook: str = "00_quickstart", **extra: Any) -> dict[str, Any]:
        """Everything ``results.json`` holds: metrics, artifact paths, tags and each step's summary."""
        return notebook_results(notebook, bundle=self.bundle, bundle_path=self.bundle_path, smoke=self.smoke,
                                data=self.data_config, artifacts=self.artifacts, tags=self.tags, steps=self.outputs,
                                **extra)

    def write_results(self, notebook: str = "00_quickstart", **extra: Any) -> Path:
        """Write :meth:`results` to ``output_dir/results.json`` and return its path."""
        return write_results(self.output_dir, self.results(notebook, **extra))


def _same_data(bundle: ModelBundle, data_hash: str, config: DataConfig) -> bool:
    """Whether ``bundle`` was trained on this very table, split the same way."""
    recorded = bundle.configs.get("data", {})
    split = ("valid_size", "test_size", "seed")
    return bundle.lineage.get("data_hash") == data_hash and all(
        recorded.get(k) == getattr(config, k) for k in split)
