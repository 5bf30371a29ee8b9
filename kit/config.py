"""Typed configs, one per step. Each validates itself in ``__post_init__``.

A config is the notebook's ``parameters`` cell in typed form: the CLI flags and the widgets map
onto the same fields, and the config travels into the bundle's ``configs`` (and from there into
the model store metadata and the service's ``/metadata``), so a served model says how it was made.

Two values are shared by every step and live here once:

* :data:`DEFAULT_BUDGET`: the accuracy budget, the largest accepted drop of the primary metric
  (quantization picks a variant within it; the release gate checks the served runtime against
  the budget the bundle was quantized with, or this one).
* :data:`SMOKE`: the smoke profile, the tiny settings CI runs every notebook and panel with;
  each config's :meth:`~_Config.smoke` applies it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from kit.errors import ConfigError

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[str, ...] = ("binary", "multiclass", "regression")

DEFAULT_BUDGET = 0.005
"""Largest accepted drop of the primary metric (0.005 = half a point of accuracy, or of R²)."""

C = TypeVar("C", bound="_Config")


@dataclass(frozen=True)
class SmokeProfile:
    """The tiny settings of a smoke run (CI, ``kit run --smoke``, ``smoke=True`` notebooks).

    Attributes:
        epochs: Training epochs.
        patience: Early-stopping patience.
        n_trials: Tuning trials.
        trial_epochs: Epochs per tuning trial.
        repeats: Timed runs per quantization variant and batch size.
        explain_rows: Rows explained.
        background_size: SHAP background rows.
        latency_samples: One-record predictions timed by the release gate.
    """

    epochs: int = 8
    patience: int = 4
    n_trials: int = 3
    trial_epochs: int = 6
    repeats: int = 50
    explain_rows: int = 20
    background_size: int = 30
    latency_samples: int = 50


SMOKE = SmokeProfile()
"""The one smoke profile every step, panel and notebook uses."""


class _Config:
    """Shared helpers: dict round trip with unknown keys refused by name, copies, smoke settings."""

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-able dict."""
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """Build a config from a dict, refusing unknown keys.

        Args:
            values: Field names and values.

        Returns:
            The validated config.

        Raises:
            ConfigError: If a key is not a field of this config or a value is invalid.
        """
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no field {unknown[0]!r}; known fields: {', '.join(sorted(names))}",
                field=unknown[0],
            )
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        """Return a copy with some fields changed (validated again)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def resolve(cls: type[C], config: C | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> C:
        """``config`` (a config, a dict or ``None`` for the defaults) with ``overrides`` applied.

        This is how a step function takes both a config and keyword shorthands:
        ``explain(bundle, X, method="permutation")`` equals
        ``explain(bundle, X, ExplainConfig(method="permutation"))``.
        """
        base = cls.from_dict(config) if isinstance(config, Mapping) else (config or cls())
        return base.replace(**overrides) if overrides else base

    def smoke(self: C) -> C:
        """This config with the :data:`SMOKE` profile applied (the same copy for any config)."""
        return self


def _check(cond: bool, message: str, field_name: str) -> None:
    if not cond:
        raise ConfigError(message, field=field_name)


def _positive_ints(config: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
               f"{name} must be an integer >= 1, but got {name}={value!r}.", name)


@dataclass(frozen=True)
class DataConfig(_Config):
    """How to load and split a dataset.

    Attributes:
        source: A built-in dataset name (``breast_cancer``, ``wine``, ``digits``, ``diabetes``)
            or the path of a CSV or Parquet file.
        target: The target column; optional for built-ins.
        task: ``"auto"`` to detect, or ``binary`` / ``multiclass`` / ``regression``.
        valid_size: Share of rows held out for validation (early stopping, tuning).
        test_size: Share of rows held out for the final test metrics.
        seed: Seed of the split.
        unknown_category: What predict does with a category never seen in training:
            ``"error"`` (refuse, naming the column) or ``"ignore"`` (all-zero one-hot).
    """

    source: str = "breast_cancer"
    target: str | None = None
    task: str = "auto"
    valid_size: float = 0.15
    test_size: float = 0.15
    seed: int = 0
    unknown_category: str = "error"

    def __post_init__(self) -> None:
        _check(bool(self.source), f"source must name a dataset or file, but got {self.source=}.", "source")
        _check(self.task in ("auto", *TASKS), f"task must be auto or one of {TASKS}, but got {self.task=}.",
               "task")
        _check(0 < self.valid_size < 0.5, f"valid_size must be in (0, 0.5), but got {self.valid_size=}.",
               "valid_size")
        _check(0 < self.test_size < 0.5, f"test_size must be in (0, 0.5), but got {self.test_size=}.",
               "test_size")
        _check(self.valid_size + self.test_size < 0.8,
               f"valid_size + test_size must leave rows to train on, but got "
               f"{self.valid_size + self.test_size=}.", "test_size")
        _check(self.unknown_category in ("error", "ignore"),
               f"unknown_category must be 'error' or 'ignore', but got {self.unknown_category=}.",
               "unknown_category")


ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
NORMS = ("none", "batch", "layer")
SCHEDULERS = ("cosine", "onecycle", "constant")


@dataclass(frozen=True)
class TrainConfig(_Config):
    """How to build and train the network.

    Attributes:
        net: Network builder name (see :func:`kit.nets.build`).
        hidden: Hidden layer widths, e.g. ``(128, 64)``.
        dropout: Dropout after each hidden layer.
        activation: One of ``relu``, ``gelu``, ``silu``, ``tanh``.
        norm: ``none``, ``batch`` or ``layer`` normalization after each hidden linear layer.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        batch_size: Rows per optimizer step.
        epochs: Maximum number of epochs.
        patience: Epochs without validation improvement before stopping early (0 disables).
        scheduler: ``cosine`` (warm-up then cosine decay), ``onecycle`` or ``constant``.
        warmup_epochs: Linear warm-up length for ``cosine``.
        monitor: Validation metric that drives early stopping and best-weights restore;
            ``auto`` uses log loss for classifiers and RMSE for regression.
        seed: Seed of weights init and batch order: same seed, same metrics.
        device: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
    """

    net: str = "mlp"
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    activation: str = "relu"
    norm: str = "none"
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    epochs: int = 200
    patience: int = 20
    scheduler: str = "cosine"
    warmup_epochs: int = 3
    monitor: str = "auto"
    seed: int = 0
    device: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        _check(len(self.hidden) >= 1 and all(h > 0 for h in self.hidden),
               f"hidden must be one or more positive widths, but got {self.hidden=}.", "hidden")
        _check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), but got {self.dropout=}.", "dropout")
        _check(self.activation in ACTIVATIONS,
               f"activation must be one of {ACTIVATIONS}, but got {self.activation=}.", "activation")
        _check(self.norm in NORMS, f"norm must be one of {NORMS}, but got {self.norm=}.", "norm")
        _check(self.lr > 0, f"lr must be positive, but got {self.lr=}.", "lr")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, but got {self.weight_decay=}.",
               "weight_decay")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, but got {self.batch_size=}.", "batch_size")
        _check(self.epochs >= 1, f"epochs must be >= 1, but got {self.epochs=}.", "epochs")
        _check(self.patience >= 0, f"patience must be >= 0, but got {self.patience=}.", "patience")
        _check(self.scheduler in SCHEDULERS,
               f"scheduler must be one of {SCHEDULERS}, but got {self.scheduler=}.", "scheduler")
        _check(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, but got {self.warmup_epochs=}.",
               "warmup_epochs")
        _check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               f"device must be auto, cpu or cuda, but got {self.device=}.", "device")

    def smoke(self) -> TrainConfig:
        """At most :data:`SMOKE` epochs and patience."""
        return self.replace(epochs=min(self.epochs, SMOKE.epochs), patience=min(self.patience, SMOKE.patience),
                            warmup_epochs=min(self.warmup_epochs, 1))


PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")


@dataclass(frozen=True)
class TuneConfig(_Config):
    """How to search hyperparameters (see :func:`kit.tune.tune`).

    Attributes:
        n_trials: Target number of finished (COMPLETE or PRUNED) trials; a re-run of the same
            study resumes until the target is reached.
        timeout: Stop starting new trials after this many seconds (``None``: no limit).
        space: Parameter specs (see :mod:`kit.tune`); ``None`` for the default space.
        storage: ``None`` (SQLite file under ``run_dir``), an SQLAlchemy URL, ``journal:PATH``.
        study_name: Defaults to ``kit-<data>-<metric>``.
        metric: Validation metric to optimize; ``None``: the training monitor (log loss / RMSE).
        pruner: ``median``, ``hyperband`` or ``none``.
        sampler: ``tpe`` or ``random``.
        n_workers: Processes sharing the storage (this one plus ``n_workers - 1`` spawned).
        seed: Sampler seed (worker ``i`` uses ``seed + i``).
        epochs: Maximum epochs per trial; ``None``: the base TrainConfig's (100 when none is given).
        patience: Early-stopping patience per trial; ``None``: the base TrainConfig's (15 when none is given).
        run_dir: Directory of the default SQLite file.
        heartbeat: RDB heartbeat interval in seconds (``None`` disables).
        threads: Torch CPU threads per worker (``None``: torch's own, or ``cpu_count // n_workers``).
        retrain: Retrain the best config into a bundle at the end.
    """

    n_trials: int = 20
    timeout: float | None = None
    space: dict[str, Any] | None = None
    storage: str | None = None
    study_name: str | None = None
    metric: str | None = None
    pruner: str = "median"
    sampler: str = "tpe"
    n_workers: int = 1
    seed: int | None = 0
    epochs: int | None = None
    patience: int | None = None
    run_dir: str = "runs/tune"
    heartbeat: int | None = 10
    threads: int | None = None
    retrain: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", str(self.run_dir))
        _positive_ints(self, ("n_trials", "n_workers"))
        _check(self.epochs is None or (isinstance(self.epochs, int) and self.epochs >= 1),
               f"epochs must be an integer >= 1, but got {self.epochs=}.", "epochs")
        _check(self.patience is None or (isinstance(self.patience, int) and self.patience >= 0),
               f"patience must be >= 0, but got {self.patience=}.", "patience")
        _check(self.pruner in PRUNERS, f"pruner must be one of {PRUNERS}, but got {self.pruner=}.", "pruner")
        _check(self.sampler in SAMPLERS, f"sampler must be one of {SAMPLERS}, but got {self.sampler=}.", "sampler")
        _check(self.timeout is None or self.timeout > 0,
               f"timeout must be positive seconds, but got {self.timeout=}.", "timeout")
        _check(self.heartbeat is None or self.heartbeat > 0,
               f"heartbeat must be a positive number of seconds, but got {self.heartbeat=}.", "heartbeat")
        _check(self.threads is None or self.threads >= 1, f"threads must be >= 1, but got {self.threads=}.",
               "threads")
        _check(self.space is None or isinstance(self.space, dict),
               f"space must be a mapping of parameter to spec, but got {type(self.space).__name__}.", "space")

    def smoke(self) -> TuneConfig:
        """At most :data:`SMOKE` trials of :data:`SMOKE` epochs."""
        return self.replace(n_trials=min(self.n_trials, SMOKE.n_trials),
                            epochs=min(self.epochs or SMOKE.trial_epochs, SMOKE.trial_epochs),
                            patience=min(self.patience or SMOKE.patience, SMOKE.patience))

    def base(self, train: TrainConfig | None = None) -> TrainConfig:
        """The TrainConfig every trial starts from.

        That is ``train`` (or 100 epochs with patience 15) with this config's ``epochs``, ``patience``
        and ``metric`` applied; the search space overrides the rest.
        """
        base = train or TrainConfig(epochs=100, patience=15)
        changes: dict[str, Any] = {k: v for k, v in (("epochs", self.epochs), ("patience", self.patience),
                                                     ("monitor", self.metric)) if v is not None}
        return base.replace(**changes) if changes else base


EXPLAIN_METHODS = ("auto", "deep", "gradient", "permutation", "kernel")
EXPLAIN_OUTPUTS = ("logit", "probability")


@dataclass(frozen=True)
class ExplainConfig(_Config):
    """How to explain a bundle with SHAP (see :func:`kit.explain.explain`).

    Attributes:
        method: ``auto``, ``deep``, ``gradient``, ``permutation`` or ``kernel``.
        output: ``logit`` (default) or ``probability`` for classifiers.
        target: Class to explain (a label or class index); ``None``: the positive (second) class
            for binary, each row's predicted class for multiclass.
        rows: Test rows explained when no rows are given (CLI, notebooks, panels).
        background_size: Background rows kept.
        background_kind: ``sample`` (seeded random rows) or ``kmeans`` (rows nearest k-means centroids).
        seed: Seed of every sample and of the randomized engines.
        max_rows: Larger inputs are replaced by a seeded sample of this many rows.
        tolerance: Additivity tolerance, relative to the output scale (target std for regression).
        nsamples: Engine budget (gradient samples, permutation/kernel evaluations); ``None``: defaults.
        device: Torch device of ``deep``/``gradient``.
    """

    method: str = "auto"
    output: str = "logit"
    target: Any = None
    rows: int = 200
    background_size: int = 100
    background_kind: str = "sample"
    seed: int = 0
    max_rows: int = 1000
    tolerance: float = 1e-4
    nsamples: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        _check(self.method in EXPLAIN_METHODS, f"method must be one of {EXPLAIN_METHODS}, but got {self.method=}.",
               "method")
        _check(self.output in EXPLAIN_OUTPUTS, f"output must be one of {EXPLAIN_OUTPUTS}, but got {self.output=}.",
               "output")
        _positive_ints(self, ("rows", "background_size", "max_rows"))
        _check(self.background_kind in ("sample", "kmeans"),
               f"background_kind must be 'sample' or 'kmeans', but got {self.background_kind=}.", "background_kind")
        _check(self.tolerance >= 0, f"tolerance must be >= 0, but got {self.tolerance=}.", "tolerance")
        _check(self.nsamples is None or self.nsamples >= 1, f"nsamples must be >= 1, but got {self.nsamples=}.",
               "nsamples")

    def smoke(self) -> ExplainConfig:
        """At most :data:`SMOKE` rows and background rows."""
        return self.replace(rows=min(self.rows, SMOKE.explain_rows),
                            background_size=min(self.background_size, SMOKE.background_size))


QUANTIZE_OBJECTIVES = ("p50_batch1", "p99_batch1", "p50_batch64", "p99_batch64", "size_bytes")


@dataclass(frozen=True)
class QuantizeConfig(_Config):
    """Which runtimes to compare and how to choose one (see :mod:`kit.quantize`).

    Attributes:
        variants: Variant names to compare; ``None``: every variant (static int8 when
            calibration rows are available).
        budget: Largest accepted drop of the primary metric versus torch fp32.
        objective: Report column the choice minimizes.
        threads: Intra-op threads for measuring and serving (1 = batch-1 serving).
        repeats: Timed runs per variant and batch size.
        warmup: Untimed runs before timing.
    """

    variants: tuple[str, ...] | None = None
    budget: float = DEFAULT_BUDGET
    objective: str = "p50_batch1"
    threads: int = 1
    repeats: int = 300
    warmup: int = 30

    def __post_init__(self) -> None:
        if self.variants is not None:
            object.__setattr__(self, "variants", tuple(self.variants))
        _check(isinstance(self.budget, int | float) and self.budget >= 0,
               f"budget must be >= 0, but got {self.budget=}.", "budget")
        _check(self.objective in QUANTIZE_OBJECTIVES,
               f"objective must be one of {QUANTIZE_OBJECTIVES}, but got {self.objective=}.", "objective")
        _positive_ints(self, ("threads", "repeats"))
        _check(isinstance(self.warmup, int) and self.warmup >= 0, f"warmup must be >= 0, but got {self.warmup=}.",
               "warmup")

    def smoke(self) -> QuantizeConfig:
        """At most :data:`SMOKE` timed runs."""
        return self.replace(repeats=min(self.repeats, SMOKE.repeats), warmup=min(self.warmup, 10))


GATE_CHECKS: tuple[str, ...] = ("metric", "runtime_drop", "latency_p99", "noise_robustness", "missing_robustness",
                                "calibration", "slice_gap", "schema_contract", "explanation_stability")
"""Every check of the release gate, in report order."""


@dataclass(frozen=True)
class GateConfig(_Config):
    """Thresholds of the release gate (see :mod:`kit.gate`).

    Attributes:
        metric: Metric of the ``metric``, ``runtime_drop`` and ``slice_gap`` checks; ``None`` uses
            the bundle's primary metric (accuracy, or R² for regression).
        metric_floor: Lowest acceptable test metric (highest, for lower-is-better metrics);
            ``None`` requires beating the trivial baseline on the same split.
        max_metric_drop: Largest acceptable metric loss of the chosen runtime vs fp32 torch;
            ``None`` uses the budget the bundle was quantized with, else :data:`DEFAULT_BUDGET`.
        max_p99_ms: Largest acceptable p99 latency of one-record prediction, in milliseconds.
        latency_samples: Timed one-record predictions (after 20 warm-up calls).
        noise_scale: Noise standard deviation as a share of each numeric feature's training std.
        noise_repeats: Noisy copies of the test split.
        max_noise_flip_rate: Largest acceptable share of flipped predictions under noise; for
            regression, the mean absolute change of the prediction in target standard deviations.
        max_missing_flip_rate: The same limit with one feature at a time missing (imputed).
        max_ece: Largest acceptable expected calibration error (classifiers).
        ece_bins: Equal-width confidence bins of the ECE.
        slice_column: Categorical column whose values define slices; ``None`` skips the check.
        max_slice_gap: Largest acceptable metric spread between slices.
        min_slice_rows: Slices with fewer test rows are left out (and listed).
        top_k: Features compared by the explanation-stability check.
        min_topk_agreement: Smallest acceptable share of top-k features the two backgrounds share.
        background_size: Rows in each of the two disjoint SHAP backgrounds (from the train split).
        explain_rows: Test rows explained for the stability check.
        max_rows: Test rows used by the robustness checks (a random subset above this).
        seed: Seed of noise, subsets and backgrounds.
        skip: Check names not to run (reported as skipped, with the reason).
    """

    metric: str | None = None
    metric_floor: float | None = None
    max_metric_drop: float | None = None
    max_p99_ms: float = 50.0
    latency_samples: int = 300
    noise_scale: float = 0.05
    noise_repeats: int = 3
    max_noise_flip_rate: float = 0.05
    max_missing_flip_rate: float = 0.15
    max_ece: float = 0.10
    ece_bins: int = 10
    slice_column: str | None = None
    max_slice_gap: float = 0.10
    min_slice_rows: int = 10
    top_k: int = 5
    min_topk_agreement: float = 0.6
    background_size: int = 50
    explain_rows: int = 40
    max_rows: int = 300
    seed: int = 0
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from kit.metrics import HIGHER_IS_BETTER

        object.__setattr__(self, "skip", tuple(self.skip))
        _check(self.metric is None or self.metric in HIGHER_IS_BETTER,
               f"metric must be one of {tuple(HIGHER_IS_BETTER)}, but got {self.metric=}.", "metric")
        for name in ("max_metric_drop", "max_p99_ms", "noise_scale", "max_noise_flip_rate", "max_missing_flip_rate",
                     "max_ece", "max_slice_gap"):
            value = getattr(self, name)
            _check((value is None and name == "max_metric_drop") or (value is not None and value >= 0),
                   f"{name} must be >= 0, but got {name}={value!r}.", name)
        _positive_ints(self, ("latency_samples", "noise_repeats", "ece_bins", "min_slice_rows", "top_k",
                              "background_size", "explain_rows", "max_rows"))
        _check(0 <= self.min_topk_agreement <= 1,
               f"min_topk_agreement must be in [0, 1], but got {self.min_topk_agreement=}.", "min_topk_agreement")
        unknown = [s for s in self.skip if s not in GATE_CHECKS]
        _check(not unknown, f"skip names unknown checks {unknown}; known: {', '.join(GATE_CHECKS)}", "skip")

    def smoke(self) -> GateConfig:
        """At most :data:`SMOKE` latency samples and background rows."""
        return self.replace(latency_samples=min(self.latency_samples, SMOKE.latency_samples),
                            background_size=min(self.background_size, SMOKE.background_size),
                            explain_rows=min(self.explain_rows, SMOKE.explain_rows))
