"""The release gate: checks a bundle must pass before it is packaged.

Accuracy alone does not make a model fit to ship. :func:`check` measures, on the held-out test
split rebuilt from the bundle's own data config (same split seed):

========================  ===================================================================
``metric``                task metric (accuracy / R² by default) >= a floor; without a floor,
                          the trivial baseline (majority class, or the mean) must be beaten
``runtime_drop``          metric drop of the chosen runtime vs the fp32 torch network <= budget
``latency_p99``           p99 of ``bundle.infer`` on one record (the served path) <= budget
``noise_robustness``      share of predictions that flip under small Gaussian noise on numeric
                          features <= limit (regression: mean change in target std units)
``missing_robustness``    same, with one feature at a time set missing, for every row
``calibration``           expected calibration error (classifiers) <= limit
``slice_gap``             spread of the metric across the values of one categorical column
``schema_contract``       the example input validates, round-trips through JSON and predicts
                          the same; bad records are refused naming the field
``explanation_stability`` top-k SHAP features agree across two disjoint backgrounds
========================  ===================================================================

The measurements live in :mod:`kit._gate_checks`, one function per check. The :class:`GateReport`
goes into the bundle as ``sections["gate"]`` (``passed``, ``checks``,
``config``); packaging reads ``passed`` and refuses a failing bundle.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit import metrics as km
from kit._json import to_json
from kit.config import _check, _Config
from kit.errors import ConfigError, KitError

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

CHECKS: tuple[str, ...] = ("metric", "runtime_drop", "latency_p99", "noise_robustness", "missing_robustness",
                           "calibration", "slice_gap", "schema_contract", "explanation_stability")
"""Every check :func:`check` runs, in report order."""


@dataclass(frozen=True)
class GateConfig(_Config):
    """Thresholds of the release gate.

    Attributes:
        metric: Metric of the ``metric``, ``runtime_drop`` and ``slice_gap`` checks; ``None`` uses
            the bundle's primary metric (accuracy, or R² for regression).
        metric_floor: Lowest acceptable test metric (highest, for lower-is-better metrics);
            ``None`` requires beating the trivial baseline on the same split.
        max_metric_drop: Largest acceptable metric loss of the chosen runtime vs fp32 torch.
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
    max_metric_drop: float = 0.01
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
        object.__setattr__(self, "skip", tuple(self.skip))
        _check(self.metric is None or self.metric in km.HIGHER_IS_BETTER,
               f"metric must be one of {tuple(km.HIGHER_IS_BETTER)}, but got {self.metric=}.", "metric")
        for name in ("max_metric_drop", "max_p99_ms", "noise_scale", "max_noise_flip_rate", "max_missing_flip_rate",
                     "max_ece", "max_slice_gap"):
            value = getattr(self, name)
            _check(value >= 0, f"{name} must be >= 0, but got {name}={value!r}.", name)
        for name in ("latency_samples", "noise_repeats", "ece_bins", "min_slice_rows", "top_k", "background_size",
                     "explain_rows", "max_rows"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"{name} must be an integer >= 1, but got {name}={value!r}.",
                   name)
        _check(0 <= self.min_topk_agreement <= 1,
               f"min_topk_agreement must be in [0, 1], but got {self.min_topk_agreement=}.", "min_topk_agreement")
        unknown = [s for s in self.skip if s not in CHECKS]
        _check(not unknown, f"skip names unknown checks {unknown}; known: {', '.join(CHECKS)}", "skip")


@dataclass
class Check:
    """One check's outcome. ``skipped`` checks count as passed and say why in ``reason``."""

    name: str
    passed: bool
    value: Any
    threshold: Any
    reason: str
    skipped: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class GateReport:
    """Pass/fail of the release gate with one reason per check."""

    passed: bool
    checks: list[Check]
    config: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored as ``bundle.sections["gate"]`` (``failures``: one line per failed check)."""
        out = {**asdict(self), "failures": [f"{c.name}: {c.reason}" for c in self.failed]}
        return to_json(out)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GateReport:
        """Rebuild a report from :meth:`to_dict` output (e.g. a loaded bundle's section)."""
        checks = [Check(**c) for c in values.get("checks", [])]
        return cls(passed=bool(values["passed"]), checks=checks, config=dict(values.get("config", {})),
                   data=dict(values.get("data", {})), runtime=dict(values.get("runtime", {})),
                   created_at=str(values.get("created_at", "")))

    def attach(self, bundle: ModelBundle) -> ModelBundle:
        """A copy of ``bundle`` with this report as ``sections["gate"]``."""
        return bundle.with_section("gate", self.to_dict())

    def table(self) -> pd.DataFrame:
        """One row per check: status, value, threshold, reason."""
        rows = [{"check": c.name, "status": _status(c), "value": _short(c.value), "threshold": _short(c.threshold),
                 "reason": c.reason} for c in self.checks]
        return pd.DataFrame(rows).set_index("check")

    def __str__(self) -> str:
        head = f"gate {'PASSED' if self.passed else 'FAILED'}"
        if not self.passed:
            head += f": {', '.join(c.name for c in self.failed)} failed"
        lines = [head, f"{'':4}  {'check':22} {'value':>9} {'limit':>9}  reason"]
        lines += [f"{_status(c):4}  {c.name:22} {_short(c.value):>9} {_short(c.threshold):>9}  {c.reason}"
                  for c in self.checks]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.passed else "#cf222e"
        return (f"<p><b style='color:{color}'>gate {'passed' if self.passed else 'failed'}</b></p>"
                + self.table().to_html())


def _status(c: Check) -> str:
    return "skip" if c.skipped else ("pass" if c.passed else "FAIL")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)




def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: the confidence-weighted gap between confidence and accuracy over equal-width bins."""
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(float(correct[mask].mean()) - float(conf[mask].mean()))
    return float(ece)


def check(bundle: ModelBundle, data: Any = None, config: GateConfig | None = None) -> GateReport:
    """Run every release check on ``bundle`` and return the report (the bundle is not changed).

    Args:
        bundle: The bundle to gate, predicting with its chosen runtime.
        data: ``None`` rebuilds the dataset from ``bundle.configs["data"]``; or a DataConfig,
            Dataset, path or DataFrame. The test split always uses the bundle's split settings.
        config: Thresholds; defaults to ``GateConfig()``.

    Returns:
        The report; store it with ``report.attach(bundle)`` (``sections["gate"]``).

    Raises:
        ConfigError: On a bad config (e.g. an unknown slice column).
        DataError: If the data cannot be loaded or does not fit the bundle.
    """
    from kit import _gate_checks as checks_

    config = config or GateConfig()
    dataset, split_config = checks_.dataset(bundle, data)
    if dataset.task != bundle.task or dataset.target != bundle.target:
        raise ConfigError(f"the data is a {dataset.task} task on {dataset.target!r} but the bundle predicts "
                          f"{bundle.target!r} ({bundle.task})", field="data")
    splits = dataset.split(split_config.valid_size, split_config.test_size, split_config.seed)
    metric = config.metric or bundle.primary_metric
    if (metric in ("rmse", "mae", "r2")) != (bundle.task == "regression"):
        raise ConfigError(f"metric {metric!r} does not apply to a {bundle.task} model", field="metric")
    y_raw = dataset.decode_target(splits.test.y)
    ctx = checks_.Context(bundle, config, dataset, splits.test, splits.train, y_raw, metric,
                          np.random.default_rng(config.seed))
    checks: list[Check] = []
    for name in CHECKS:
        if name in config.skip:
            checks.append(Check(name, True, None, None, "skipped by GateConfig.skip", skipped=True))
            continue
        start = time.perf_counter()
        try:
            result = checks_.RUNNERS[name](ctx)
        except ConfigError:
            raise
        except KitError as exc:
            result = Check(name, False, None, None, f"could not run: {exc.message}")
        result.seconds = time.perf_counter() - start
        checks.append(result)
    expected = bundle.lineage.get("data_hash")
    data_info = {"name": dataset.name, "rows": len(dataset.frame), "test_rows": len(splits.test),
                 "split_seed": split_config.seed, "hash_matches_lineage": expected in (None, dataset.data_hash)}
    return GateReport(passed=all(c.passed for c in checks), checks=checks, config=config.to_dict(),
                      data=data_info, runtime=dict(bundle.runtime_info),
                      created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def gate(bundle: ModelBundle, data: Any = None, config: GateConfig | None = None) -> tuple[ModelBundle, GateReport]:
    """:func:`check` and store the report: returns ``(bundle copy with sections["gate"], report)``."""
    report = check(bundle, data, config)
    return report.attach(bundle), report


# -- CLI -------------------------------------------------------------------------------------------
def cmd_gate(args: argparse.Namespace) -> int:
    """Gate a saved bundle, print the report, save it into the bundle, optionally write the card."""
    from kit.bundle import ModelBundle

    bundle = ModelBundle.load(args.bundle)
    values: dict[str, Any] = {"metric_floor": args.metric_floor, "max_metric_drop": args.max_drop,
                              "max_p99_ms": args.max_p99_ms, "max_noise_flip_rate": args.max_flip_rate,
                              "max_missing_flip_rate": args.max_missing_flip_rate, "max_ece": args.max_ece,
                              "slice_column": args.slice, "max_slice_gap": args.max_slice_gap}
    config = GateConfig().replace(**{k: v for k, v in values.items() if v is not None}, skip=tuple(args.skip))
    gated, report = gate(bundle, args.data, config)
    print(report)
    out = gated.save(args.out or args.bundle)
    print(f"gate report saved to {out}/bundle.json (sections.gate)")
    if args.card:
        from kit.card import write_card

        paths = write_card(gated, args.card)
        print(f"model card written to {', '.join(str(p) for p in paths)}")
    return 0 if report.passed else 1


def cmd_card(args: argparse.Namespace) -> int:
    """Write the model card of a saved bundle."""
    from kit.bundle import ModelBundle
    from kit.card import write_card

    paths = write_card(ModelBundle.load(args.bundle), args.out)
    print(f"model card written to {', '.join(str(p) for p in paths)}")
    return 0


def register_cli(sub: Any) -> None:
    """Add ``kit gate`` and ``kit card``."""
    p = sub.add_parser("gate", help="run the release checks on a bundle",
                       description="Run the release gate on a bundle, print the report and store it in the bundle "
                                   "(sections.gate). Exit code 0 when it passes, 1 when it fails, 2 on bad input.")
    p.add_argument("--bundle", required=True, help="bundle directory")
    p.add_argument("--out", help="write the gated bundle here (default: update --bundle in place)")
    p.add_argument("--card", help="also write the model card (Markdown and HTML) into this directory")
    p.add_argument("--data", help="dataset source; default: the bundle's own data config")
    p.add_argument("--slice", help="categorical column for the slice-gap check")
    p.add_argument("--metric-floor", type=float, help="lowest test metric (default: beat the trivial baseline)")
    p.add_argument("--max-drop", type=float, help="largest metric drop of the runtime vs fp32 (default 0.01)")
    p.add_argument("--max-p99-ms", type=float, help="largest p99 latency at batch 1, ms (default 50)")
    p.add_argument("--max-flip-rate", type=float, help="largest flip rate under noise (default 0.05)")
    p.add_argument("--max-missing-flip-rate", type=float, help="largest flip rate, one value missing (default 0.1)")
    p.add_argument("--max-ece", type=float, help="largest expected calibration error (default 0.1)")
    p.add_argument("--max-slice-gap", type=float, help="largest metric gap across slices (default 0.1)")
    p.add_argument("--skip", action="append", default=[], choices=CHECKS, help="a check not to run (repeatable)")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("card", help="write a bundle's model card (Markdown and HTML)")
    p.add_argument("--bundle", required=True, help="bundle directory")
    p.add_argument("--out", required=True, help="directory for MODEL_CARD.md and model_card.html")
    p.set_defaults(func=cmd_card)
