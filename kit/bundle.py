"""ModelBundle: the one artifact that flows through every step, and the single predict path.

On disk a bundle is a directory::

    bundle.json            manifest: task, schema, labels, network spec (builder reference, JSON
                           parameters, shapes, source sha256, ONNX export check), configs, metrics,
                           lineage, runtime choice, sections, and the sha256 of every file
    bundle.json.sha256     sha256 of bundle.json itself
    preprocessor.json      the fitted Preprocessor
    weights.safetensors    fp32 network weights
    network_source.txt     the builder's source text (a record; never executed)
    network.onnx           the fp32 ONNX export, checked against torch when it was made
    <artifacts>            e.g. quantized ONNX graphs or a SHAP background, each hashed in the manifest

No pickle anywhere: weights are safetensors, graphs ONNX, everything else JSON. Loading checks
every hash and refuses a changed, missing or corrupt file by name.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit._bundle_data import BundleData, reload
from kit._bundle_files import read_files, write_files
from kit._infer import raw_outputs
from kit._json import strict_json_default
from kit.config import DataConfig
from kit.errors import DataError, IntegrityError, KitError
from kit.prediction import Prediction, softmax
from kit.preprocess import ImagePreprocessor, Preprocessor
from kit.runtime import Runtime, get_runtime
from kit.sections import (
    SECTION_TYPES,
    BaselinesSection,
    ExplanationSection,
    GateReport,
    QuantizationSection,
    Section,
    TuningSection,
)

if TYPE_CHECKING:
    from torch import nn

    from kit.data import DataLike
    from kit.nets import NetSpec

__all__ = ["BundleData", "ModelBundle", "Prediction", "load"]

FORMAT = "kit.bundle/1"
WEIGHTS = "weights.safetensors"
PREPROCESSOR = "preprocessor.json"


@dataclass
class ModelBundle:
    """Preprocessor + network + schema + metrics + configs + lineage, saved and loaded as one.

    Build one with :func:`kit.train.train`; persist with :meth:`save` / :meth:`load`.
    """

    preprocessor: Preprocessor
    spec: dict[str, Any]
    weights: dict[str, np.ndarray]
    task: str
    target: str
    label_names: list[Any] | None
    target_scaling: dict[str, float] | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)
    runtime_info: dict[str, Any] = field(default_factory=lambda: {"name": "torch", "variant": "fp32"})
    sections: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    allow_changed_code: bool = field(default=False, repr=False, compare=False)
    _runtime: Runtime | None = field(default=None, repr=False, compare=False)

    # -- describing ----------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """Raw input columns, in schema order."""
        return list(self.preprocessor.feature_names_in_)

    @property
    def kind(self) -> str:
        """``table`` or ``image``: which input path the service, the batch scorer and drift take."""
        return "image" if isinstance(self.preprocessor, ImagePreprocessor) else "table"

    @property
    def schema(self) -> dict[str, Any]:
        """The input/output contract: the kind, features with kinds and categories, task, labels."""
        return {"kind": self.kind, "features": self.preprocessor.schema(), "target": self.target, "task": self.task,
                "labels": self.label_names, "unknown_category": self.preprocessor.unknown_category,
                "constant": self.preprocessor.constant_}

    def example(self, n: int = 1) -> list[dict[str, Any]]:
        """``n`` valid example records (training medians and modes)."""
        return [self.preprocessor.example() for _ in range(n)]

    @property
    def primary_metric(self) -> str:
        """The headline metric name for this task."""
        from kit.metrics import PRIMARY

        return PRIMARY[self.task]

    def __repr__(self) -> str:
        test = self.metrics.get("test", {})
        shown = ", ".join(f"{k}={v:.4f}" for k, v in test.items())
        return (f"ModelBundle(task={self.task!r}, features={len(self.feature_names)}, "
                f"runtime={self.runtime_info.get('name')}/{self.runtime_info.get('variant')}, test: {shown})")

    # -- predicting ----------------------------------------------------------------------------
    @property
    def runtime(self) -> Runtime:
        """The inference backend named in ``runtime_info``, created on first use."""
        if self._runtime is None:
            options = dict(self.runtime_info.get("options", {}))
            self._runtime = get_runtime(self.runtime_info["name"], self, **options)
        return self._runtime

    def set_runtime(self, runtime: str | Runtime, **options: Any) -> ModelBundle:
        """Use another inference backend in this process (the saved choice is unchanged).

        Args:
            runtime: A registered name or a :class:`~kit.runtime.Runtime` instance.
            **options: Runtime options such as ``threads``.

        Returns:
            self.
        """
        self._runtime = get_runtime(runtime, self, **options)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Validate and preprocess raw rows into the network's float32 input."""
        return self.preprocessor.transform(X)

    def infer(self, X: Any, *, groups: Sequence[int] | None = None) -> Prediction:
        """The single prediction path: check rows, preprocess, run the runtime, decode.

        Notebook, batch scorer and HTTP service all end up here, so they agree by construction.
        Images are decoded and run in bounded chunks, with the answers of one call (:mod:`kit._infer`).

        Args:
            X: Records (list of dicts), one dict, a DataFrame, or a 2-D array in schema order.
            groups: Sizes of consecutive groups of rows that are independent requests (the service's
                merged batches). A runtime whose rows depend on their batch neighbours (dynamic int8)
                runs each group on its own, so every group gets exactly ``infer(group)``.

        Returns:
            Labels and probabilities, or values.

        Raises:
            SchemaError: If the rows do not match the schema (names the column and row).
        """
        raw = raw_outputs(self, X, groups)
        if self.task == "regression":
            scale = self.target_scaling or {"mean": 0.0, "std": 1.0}
            return Prediction(values=raw[:, 0].astype(np.float64) * scale["std"] + scale["mean"])
        proba = softmax(raw.astype(np.float64))
        assert self.label_names is not None
        labels = [self.label_names[i] for i in proba.argmax(axis=1).tolist()]
        return Prediction(labels=labels, probabilities=proba, label_names=list(self.label_names))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (classification) or values (regression), one per row."""
        out = self.infer(X)
        if out.values is not None:
            return out.values
        return np.asarray(out.labels)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in ``label_names`` order.

        Raises:
            KitError: For a regression bundle.
        """
        if self.task == "regression":
            raise KitError("predict_proba is for classifiers; this bundle is a regression model",
                           field="task")
        out = self.infer(X)
        assert out.probabilities is not None
        return out.probabilities

    def evaluate(self, X: Any, y: Any) -> dict[str, float]:
        """Task metrics of this bundle (its current runtime) on rows ``X`` with raw targets ``y``."""
        from kit import metrics

        out = self.infer(X)
        if self.task == "regression":
            assert out.values is not None
            return metrics.regression(np.asarray(y, dtype=np.float64), out.values)
        assert out.probabilities is not None and self.label_names is not None
        index = {label: i for i, label in enumerate(self.label_names)}
        try:
            codes = np.array([index[v.item() if isinstance(v, np.generic) else v] for v in y], dtype=np.int64)
        except KeyError as exc:
            raise KitError(f"target value {exc.args[0]!r} is not one of the labels {self.label_names}",
                           field=self.target) from None
        return metrics.classification(codes, out.probabilities)

    @property
    def net(self) -> NetSpec:
        """The network spec: builder reference, parameters, shapes, source sha256 (:class:`~kit.nets.NetSpec`)."""
        from kit.nets import NetSpec

        return NetSpec.from_dict(self.spec)

    def module(self, device: str = "cpu", *, allow_changed_code: bool | None = None) -> nn.Module:
        """The torch network rebuilt from the spec with the bundle's weights, in eval mode.

        The one place a bundle becomes a torch module (the torch runtime, ONNX export and the
        SHAP engines all call it). The builder is imported by reference and its source sha256
        must equal the recorded one; stored code is never executed.

        Args:
            device: Torch device.
            allow_changed_code: Build even if the builder's source changed (recorded in
                ``lineage["code_changes"]``); ``None``: the bundle's ``allow_changed_code``.

        Raises:
            BuilderError: If the builder is missing or the weights do not fit what it builds.
            CodeChangedError: If its source changed and that is not allowed.
        """
        from kit import nets
        from kit.errors import BuilderError, require

        torch = require("torch", "train")
        allow = self.allow_changed_code if allow_changed_code is None else allow_changed_code
        module, changed = nets.rebuild(self.spec, allow_changed_code=allow)
        try:
            module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.weights.items()})
        except RuntimeError as exc:
            raise BuilderError(f"the weights do not fit the network {self.net.builder!r} builds now: "
                               f"{str(exc).splitlines()[0]}", field="net") from None
        seen = {c.get("current_sha256") for c in self.lineage.get("code_changes", [])}
        if changed is not None and changed["current_sha256"] not in seen:
            self.lineage["code_changes"] = [*self.lineage.get("code_changes", []), changed]
        result: nn.Module = module.eval().to(device)
        return result

    # -- the data it was made from -------------------------------------------------------------
    @property
    def data_config(self) -> DataConfig:
        """How the training data was loaded and split (``configs["data"]``).

        Raises:
            DataError: If the bundle records no data config.
        """
        if "data" not in self.configs:
            raise DataError("this bundle does not record how its data was loaded (configs['data']); pass the "
                            "data explicitly", field="configs.data")
        return DataConfig.from_dict(self.configs["data"])

    def reload_data(self, data: DataLike | None = None) -> BundleData:
        """Load the bundle's data again and split it exactly as in training.

        One policy for every step that needs the bundle's own rows (the gate's test split,
        quantization's evaluation and calibration rows, SHAP backgrounds, notebooks that continue
        from a bundle): with ``data=None`` the recorded source is loaded and must be unchanged,
        since a changed file would silently give another test split; passing ``data`` (a path,
        DataFrame, Dataset or DataConfig) uses it with the bundle's split settings, and
        ``matches_lineage`` says whether it is the training data.

        Raises:
            DataError: If the recorded data changed since training, or was an in-memory DataFrame
                (pass ``data``), or does not fit the bundle (another target or task).
        """
        return reload(self, data)

    # -- what later steps recorded ---------------------------------------------------------------
    def section(self, name: str) -> Section | None:
        """The typed section ``name`` (``tuning``, ``explanation``, ``quantization``, ``gate``), or ``None``."""
        raw = self.sections.get(name)
        if not isinstance(raw, Mapping):
            return None
        return SECTION_TYPES[name].from_dict(raw)

    @property
    def baselines(self) -> BaselinesSection | None:
        """The baselines fitted on the training split by :func:`kit.train.train`, or ``None``."""
        return self.section("baselines")  # type: ignore[return-value]

    @property
    def tuning(self) -> TuningSection | None:
        """What tuning recorded (study, best trial), or ``None``."""
        return self.section("tuning")  # type: ignore[return-value]

    @property
    def explanation(self) -> ExplanationSection | None:
        """What the stored explanation says (method, ranking), or ``None``."""
        return self.section("explanation")  # type: ignore[return-value]

    @property
    def quantization(self) -> QuantizationSection | None:
        """Which runtime variant serves the bundle and under which budget, or ``None``."""
        return self.section("quantization")  # type: ignore[return-value]

    @property
    def gate(self) -> GateReport | None:
        """The release gate's last report, or ``None`` when the gate has not run."""
        return self.section("gate")  # type: ignore[return-value]

    @property
    def gate_status(self) -> str:
        """``passed``, ``failed`` or ``unchecked``."""
        report = self.gate
        return "unchecked" if report is None else ("passed" if report.passed else "failed")

    # -- persistence ---------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The JSON manifest, without the file hashes."""
        return {
            "format": FORMAT,
            "task": self.task,
            "target": self.target,
            "label_names": self.label_names,
            "target_scaling": self.target_scaling,
            "spec": self.spec,
            "metrics": self.metrics,
            "configs": self.configs,
            "lineage": self.lineage,
            "history": self.history,
            "reference": self.reference,
            "runtime": self.runtime_info,
            "sections": self.sections,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bundle to directory ``path`` (created; existing bundle files are replaced).

        A bundle whose fp32 ONNX export is missing, or older than its weights, gets one first
        (:func:`kit.quantize.ensure_export`: exported and checked against torch); without torch
        or the builder, the bundle is written as it is.

        Returns:
            The directory.
        """
        from safetensors.numpy import save as st_save

        from kit.quantize._export import ensure_export

        ensure_export(self)

        files: dict[str, bytes] = {
            PREPROCESSOR: self.preprocessor.to_json().encode(),
            WEIGHTS: st_save({k: np.ascontiguousarray(v) for k, v in self.weights.items()}),
            **self.artifacts,
        }
        return write_files(Path(path), self.manifest(), files)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, allow_changed_code: bool = False) -> ModelBundle:
        """Load a bundle directory, verifying the sha256 of every file (no network code runs here).

        Args:
            path: The bundle directory.
            allow_changed_code: Let the torch runtime rebuild the network even if its builder's
                source changed since training (recorded in the lineage when it happens).

        Raises:
            IntegrityError: If a file is missing, changed or corrupt (names the file).
        """
        from safetensors.numpy import load as st_load

        root = Path(path)
        manifest, blobs = read_files(root, FORMAT)
        try:
            weights = dict(st_load(blobs.pop(WEIGHTS)))
            preprocessor = Preprocessor.from_json(blobs.pop(PREPROCESSOR).decode())
        except Exception as exc:  # a hash match with unreadable content means a bad writer
            raise IntegrityError(f"bundle {root} cannot be read: {exc}", file=str(root)) from exc
        return cls(
            preprocessor=preprocessor, spec=manifest["spec"], weights=weights, task=manifest["task"],
            target=manifest["target"], label_names=manifest["label_names"],
            target_scaling=manifest["target_scaling"], metrics=manifest["metrics"], configs=manifest["configs"],
            lineage=manifest["lineage"], history=manifest["history"], reference=manifest["reference"],
            runtime_info=manifest["runtime"], sections=manifest["sections"], artifacts=blobs,
            allow_changed_code=allow_changed_code,
        )

    def copy(self) -> ModelBundle:
        """A deep copy (weights and artifacts included) with no runtime attached."""
        clone = copy.copy(self)
        clone.weights = {k: v.copy() for k, v in self.weights.items()}
        clone.artifacts = dict(self.artifacts)
        for name in ("metrics", "configs", "lineage", "history", "reference", "runtime_info", "sections", "spec"):
            setattr(clone, name, copy.deepcopy(getattr(self, name)))
        clone.preprocessor = Preprocessor.from_dict(self.preprocessor.to_dict())
        clone._runtime = None
        return clone

    def with_section(self, section: Section | str, value: Mapping[str, Any] | None = None) -> ModelBundle:
        """A copy with a section added or replaced: a typed :class:`~kit.sections.Section`, or a name and a dict."""
        if isinstance(section, Section):
            name, data = section.NAME, section.to_dict()
        else:
            name, data = section, dict(value or {})
        clone = self.copy()
        clone.sections[name] = json.loads(json.dumps(data, default=strict_json_default))
        return clone


def load(path: str | os.PathLike[str], *, allow_changed_code: bool = False) -> ModelBundle:
    """Load a bundle directory (alias of :meth:`ModelBundle.load`)."""
    return ModelBundle.load(path, allow_changed_code=allow_changed_code)
