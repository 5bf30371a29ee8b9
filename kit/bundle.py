"""ModelBundle: the one artifact that flows through every step, and the single predict path.

On disk a bundle is a directory::

    bundle.json            manifest: task, schema, labels, network spec, configs, metrics,
                           lineage, runtime choice, extra sections, and the sha256 of every file
    bundle.json.sha256     sha256 of bundle.json itself
    preprocessor.json      the fitted Preprocessor
    weights.safetensors    fp32 network weights
    <artifacts>            e.g. an ONNX graph or SHAP background, each hashed in the manifest

No pickle anywhere: weights are safetensors, graphs ONNX, everything else JSON. Loading checks
every hash and refuses a changed, missing or corrupt file by name.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kit._json import strict_json_default
from kit.errors import IntegrityError, KitError
from kit.preprocess import Preprocessor
from kit.runtime import Runtime, get_runtime

FORMAT = "kit.bundle/1"
MANIFEST = "bundle.json"
WEIGHTS = "weights.safetensors"
PREPROCESSOR = "preprocessor.json"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


@dataclass
class Prediction:
    """What one call of the predict path returns.

    Attributes:
        labels: Predicted labels (classification) or ``None``.
        probabilities: Class probabilities, shape (n, k), columns in ``label_names`` order.
        values: Predicted values (regression) or ``None``.
        label_names: The class labels, in column order of ``probabilities``.
    """

    labels: list[Any] | None = None
    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None
    label_names: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what the service returns)."""
        if self.values is not None:
            return {"predictions": self.values.tolist()}
        assert self.probabilities is not None
        return {"predictions": self.labels, "probabilities": self.probabilities.tolist(),
                "labels": self.label_names}

    def to_frame(self) -> pd.DataFrame:
        """One row per input: ``prediction`` and, for classifiers, ``proba_<label>`` columns."""
        if self.values is not None:
            return pd.DataFrame({"prediction": self.values})
        assert self.probabilities is not None and self.label_names is not None
        frame = pd.DataFrame({"prediction": self.labels})
        for i, label in enumerate(self.label_names):
            frame[f"proba_{label}"] = self.probabilities[:, i]
        return frame


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
    _runtime: Runtime | None = field(default=None, repr=False, compare=False)

    # -- describing ----------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """Raw input columns, in schema order."""
        return list(self.preprocessor.feature_names_in_)

    @property
    def schema(self) -> dict[str, Any]:
        """The input/output contract: features with kinds and categories, task, labels."""
        return {"features": self.preprocessor.schema(), "target": self.target, "task": self.task,
                "labels": self.label_names, "unknown_category": self.preprocessor.unknown_category}

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

    def with_runtime(self, variant: Any, **kwargs: Any) -> ModelBundle:
        """A copy that predicts with a variant (``"ort-int8-dynamic"``, a ``select()`` result, ...).

        The ONNX artifact goes into ``artifacts`` with its sha256 in ``runtime_info``, and the
        comparison summary and the choice into ``sections["quantization"]``. See
        :func:`kit.quantize.attach` for the arguments.
        """
        from kit.quantize import attach

        return attach(self, variant, **kwargs)

    def transform(self, X: Any) -> np.ndarray:
        """Validate and preprocess raw rows into the network's float32 input."""
        return self.preprocessor.transform(X)

    def infer(self, X: Any) -> Prediction:
        """The single prediction path: check rows, preprocess, run the runtime, decode.

        Notebook, batch scorer and HTTP service all end up here, so they agree by construction.

        Args:
            X: Records (list of dicts), one dict, a DataFrame, or a 2-D array in schema order.

        Returns:
            Labels and probabilities, or values.

        Raises:
            SchemaError: If the rows do not match the schema (names the column and row).
        """
        x = np.ascontiguousarray(self.transform(X))
        raw = self.runtime.run(x) if len(x) else np.zeros((0, self.spec["n_out"]), dtype=np.float32)
        if self.task == "regression":
            scale = self.target_scaling or {"mean": 0.0, "std": 1.0}
            return Prediction(values=raw[:, 0].astype(np.float64) * scale["std"] + scale["mean"])
        proba = _softmax(raw.astype(np.float64))
        assert self.label_names is not None
        labels = [self.label_names[i] for i in proba.argmax(axis=1)]
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

        Returns:
            The directory.
        """
        from safetensors.numpy import save as st_save

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        files: dict[str, bytes] = {
            PREPROCESSOR: self.preprocessor.to_json().encode(),
            WEIGHTS: st_save({k: np.ascontiguousarray(v) for k, v in self.weights.items()}),
            **self.artifacts,
        }
        for name, data in files.items():
            _atomic_write(out / name, data)
        manifest = self.manifest()
        manifest["files"] = {name: sha256_bytes(data) for name, data in sorted(files.items())}
        text = json.dumps(manifest, indent=1, sort_keys=True, default=strict_json_default).encode()
        _atomic_write(out / MANIFEST, text)
        _atomic_write(out / f"{MANIFEST}.sha256", f"{sha256_bytes(text)}  {MANIFEST}\n".encode())
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelBundle:
        """Load a bundle directory, verifying the sha256 of every file.

        Raises:
            IntegrityError: If a file is missing, changed or corrupt (names the file).
        """
        from safetensors.numpy import load as st_load

        root = Path(path)
        if not (root / MANIFEST).is_file():
            raise IntegrityError(f"{root} is not a kit bundle: {MANIFEST} is missing", file=str(root / MANIFEST))
        text = (root / MANIFEST).read_bytes()
        sums = root / f"{MANIFEST}.sha256"
        if not sums.is_file():
            raise IntegrityError(f"{sums.name} is missing from {root}", file=str(sums))
        if sums.read_text().split()[0] != sha256_bytes(text):
            raise IntegrityError(f"{MANIFEST} in {root} was changed or is corrupt (sha256 mismatch)",
                                 file=str(root / MANIFEST))
        manifest = json.loads(text)
        if manifest.get("format") != FORMAT:
            raise IntegrityError(f"{root / MANIFEST} has format {manifest.get('format')!r}, expected {FORMAT!r}",
                                 file=str(root / MANIFEST))
        blobs: dict[str, bytes] = {}
        for name, digest in manifest["files"].items():
            file = root / name
            if not file.is_file():
                raise IntegrityError(f"{name} is missing from bundle {root}", file=str(file))
            data = file.read_bytes()
            if sha256_bytes(data) != digest:
                raise IntegrityError(f"{name} in bundle {root} was changed or is corrupt (sha256 mismatch)",
                                     file=str(file))
            blobs[name] = data
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

    def with_section(self, name: str, value: Mapping[str, Any]) -> ModelBundle:
        """A copy with a JSON section (e.g. ``quantization``, ``gate``) added or replaced."""
        clone = self.copy()
        clone.sections[name] = json.loads(json.dumps(dict(value), default=strict_json_default))
        return clone


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike[str]) -> ModelBundle:
    """Load a bundle directory (alias of :meth:`ModelBundle.load`)."""
    return ModelBundle.load(path)
