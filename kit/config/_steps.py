"""One config per later step: tuning, explaining, quantizing, the release gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kit.config._base import DEFAULT_BUDGET, SMOKE, _check, _Config, _positive_ints
from kit.config._data import TrainConfig

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
        metric: Validation metric to optimize (trials early-stop on it too); ``None``: log loss
            for classifiers, RMSE for regression (a plain metric, so trials with different label
            smoothing compare fairly).
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
        _check(self.metric is None or self.metric in ("log_loss", "accuracy", "f1", "roc_auc", "rmse", "mae", "r2"),
               f"metric must be a validation metric (log_loss, accuracy, f1, roc_auc, rmse, mae, r2), but got "
               f"{self.metric=}.", "metric")
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


CALIBRATIONS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class CompressConfig(_Config):
    """How to search smaller networks and int8 graphs under one accuracy budget (see :func:`kit.quantize.compress`).

    Attributes:
        budget: Largest accepted drop of the primary metric versus the original network (torch fp32).
        objective: Report column the choice minimizes.
        sparsities: Structured-pruning schedule: shares of hidden units removed, in increasing order;
            each step prunes the previous step's network further and fine-tunes it. Empty: no pruning.
        finetune_epochs: Epochs of fine-tuning (on the teacher's soft outputs plus the labels) after
            each pruning step.
        students: Distillation students: builder parameters of narrower networks, e.g.
            ``({"hidden": [32]},)``, over the original's own parameters when the builder is the same;
            each is built with ``student_net`` (``None``: the original builder). The defaults are
            one-layer MLPs of 128, 64 and 32 units without dropout (a narrow student underfits
            rather than overfits).
        student_net: The students' builder (a registered name or ``module:function``); ``None``: the
            original network's builder.
        student_sparsities: Pruning schedule applied to each student after distillation (stacked
            candidates: distill, then prune, then int8), fine-tuned on the original's soft outputs
            like the pruning above. Empty: students are not pruned.
        distill_epochs: Most epochs a student trains (early stopping on the validation loss, patience
            a fifth of them).
        temperature: Softmax temperature of the teacher's soft targets.
        alpha: Weight of the distillation loss; ``1 - alpha`` goes to the labels.
        calibrations: Static int8 calibration methods to try.
        fallback_nodes: Most matrix-multiply nodes kept in fp32 when int8 costs accuracy.
        int8: Also build int8 graphs of every candidate network (else fp32 ONNX only).
        time_budget: Seconds after which no new candidate is started (``None``: no limit).
        threads: Intra-op threads for measuring and serving.
        repeats: Timed runs per candidate and batch size.
        warmup: Untimed runs before timing.
        seed: Seed of fine-tuning and distillation.
    """

    budget: float = DEFAULT_BUDGET
    objective: str = "p50_batch64"
    sparsities: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95)
    finetune_epochs: int = 8
    students: tuple[dict[str, Any], ...] = ({"hidden": [128], "dropout": 0.0}, {"hidden": [64], "dropout": 0.0},
                                            {"hidden": [32], "dropout": 0.0})
    student_net: str | None = None
    student_sparsities: tuple[float, ...] = (0.5,)
    distill_epochs: int = 150
    temperature: float = 4.0
    alpha: float = 0.7
    calibrations: tuple[str, ...] = CALIBRATIONS
    fallback_nodes: int = 2
    int8: bool = True
    time_budget: float | None = None
    threads: int = 1
    repeats: int = 200
    warmup: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("sparsities", "student_sparsities", "students", "calibrations"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check(isinstance(self.budget, int | float) and self.budget >= 0,
               f"budget must be >= 0, but got {self.budget=}.", "budget")
        _check(self.objective in QUANTIZE_OBJECTIVES,
               f"objective must be one of {QUANTIZE_OBJECTIVES}, but got {self.objective=}.", "objective")
        for name in ("sparsities", "student_sparsities"):
            shares = getattr(self, name)
            _check(all(isinstance(s, int | float) and 0 < s < 1 for s in shares)
                   and list(shares) == sorted(set(shares)),
                   f"{name} must be increasing shares between 0 and 1, but got {shares!r}.", name)
        _check(all(isinstance(s, dict) for s in self.students),
               f"students must be parameter mappings, but got {self.students=}.", "students")
        _check(all(c in CALIBRATIONS for c in self.calibrations),
               f"calibrations must be among {CALIBRATIONS}, but got {self.calibrations=}.", "calibrations")
        _check(isinstance(self.temperature, int | float) and self.temperature > 0,
               f"temperature must be > 0, but got {self.temperature=}.", "temperature")
        _check(isinstance(self.alpha, int | float) and 0 <= self.alpha <= 1,
               f"alpha must be between 0 and 1, but got {self.alpha=}.", "alpha")
        _check(self.time_budget is None or (isinstance(self.time_budget, int | float) and self.time_budget > 0),
               f"time_budget must be > 0 seconds, but got {self.time_budget=}.", "time_budget")
        _positive_ints(self, ("finetune_epochs", "distill_epochs", "threads", "repeats"))
        for name in ("warmup", "fallback_nodes"):
            _check(isinstance(getattr(self, name), int) and getattr(self, name) >= 0,
                   f"{name} must be >= 0, but got {getattr(self, name)!r}.", name)

    def smoke(self) -> CompressConfig:
        """Two pruning steps, one student, few epochs, at most :data:`SMOKE` timed runs."""
        return self.replace(sparsities=self.sparsities[:2], students=self.students[:1],
                            finetune_epochs=min(self.finetune_epochs, 3),
                            distill_epochs=min(self.distill_epochs, SMOKE.epochs),
                            calibrations=self.calibrations[:1], repeats=min(self.repeats, SMOKE.repeats),
                            warmup=min(self.warmup, 10))


GATE_CHECKS: tuple[str, ...] = ("metric", "baseline", "runtime_drop", "latency_p99", "noise_robustness",
                                "missing_robustness", "calibration", "slice_gap", "schema_contract",
                                "explanation_stability")
"""Every check of the release gate, in report order."""

BASELINE_ACTIONS = ("warn", "fail")


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
        max_baseline_gap: How far the network's test metric may trail the best baseline (a linear
            model or HistGradientBoosting on the same split, see :mod:`kit.baselines`); ``None``
            uses the shared budget :data:`DEFAULT_BUDGET`.
        baseline_action: What a larger gap does: ``warn`` (the check passes with a warning) or
            ``fail`` (the gate fails).
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
    max_baseline_gap: float | None = None
    baseline_action: str = "warn"
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
        _check(self.baseline_action in BASELINE_ACTIONS,
               f"baseline_action must be one of {BASELINE_ACTIONS}, but got {self.baseline_action=}.",
               "baseline_action")
        for name in ("max_metric_drop", "max_baseline_gap", "max_p99_ms", "noise_scale", "max_noise_flip_rate",
                     "max_missing_flip_rate", "max_ece", "max_slice_gap"):
            value = getattr(self, name)
            optional = value is None and name in ("max_metric_drop", "max_baseline_gap")
            _check(optional or (value is not None and value >= 0),
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
