"""Typed sections of a bundle's manifest: what the baselines, tuning, explaining, quantizing and gating recorded.

Each step stores one section under ``bundle.sections[<name>]`` as JSON and reads it back through
these classes (``bundle.baselines``, ``bundle.tuning``, ``bundle.explanation``, ``bundle.quantization``,
``bundle.gate``), so the model card, the model store metadata, the release gate and the service read
fields instead of guessing keys. ``from_dict`` keeps keys it does not know in ``extra`` (a newer kit's fields
survive a round trip through an older one) and reads the keys older bundles used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from kit._json import to_json

if TYPE_CHECKING:
    import pandas as pd

S = TypeVar("S", bound="Section")


class Section:
    """Base class: a JSON round trip that keeps unknown keys.

    Subclasses are dataclasses with an ``extra`` field and a class attribute ``NAME`` (the key
    under ``bundle.sections``).
    """

    NAME: ClassVar[str] = ""
    LEGACY: ClassVar[dict[str, str]] = {}
    """Old key -> field name, read by :meth:`from_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the manifest (``extra`` keys flattened back in)."""
        values = dataclasses.asdict(self)  # type: ignore[call-overload]
        extra = values.pop("extra", {})
        out: dict[str, Any] = to_json({**extra, **values})
        return out

    @classmethod
    def from_dict(cls: type[S], values: Mapping[str, Any]) -> S:
        """Rebuild from :meth:`to_dict` output (or an older bundle's section)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}  # type: ignore[arg-type]
        renamed = {cls.LEGACY.get(k, k): v for k, v in values.items()}
        known = {k: v for k, v in renamed.items() if k in names}
        extra = {k: v for k, v in values.items() if cls.LEGACY.get(k, k) not in names}
        return cls(**{**known, "extra": extra})


@dataclass
class TuningSection(Section):
    """What :func:`kit.tune.tune` found: the study, the best trial and how it was searched."""

    NAME: ClassVar[str] = "tuning"

    study_name: str = ""
    storage: str = ""
    metric: str = ""
    direction: str = ""
    n_trials: dict[str, int] = field(default_factory=dict)
    target: int | None = None
    best_trial: int | None = None
    best_value: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    pruner: str | None = None
    sampler: str | None = None
    seed: int | None = None
    space: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExplanationSection(Section):
    """What :func:`kit.explain.attach` stored: method, global ranking, additivity, the background's shape."""

    NAME: ClassVar[str] = "explanation"

    method: str = ""
    why: str = ""
    output: str = ""
    importance: list[dict[str, Any]] = field(default_factory=list)
    additivity_error: float | None = None
    tolerance: float | None = None
    rows_explained: int = 0
    background_size: int = 0
    background_kind: str = ""
    background_artifact: str = ""
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuantizationSection(Section):
    """Which runtime variant serves the bundle, under which budget, and what every variant measured."""

    NAME: ClassVar[str] = "quantization"
    LEGACY: ClassVar[dict[str, str]] = {"max_metric_drop": "budget"}

    chosen: str = ""
    budget: float | None = None
    objective: str | None = None
    reasons: list[str] = field(default_factory=list)
    runtime: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None
    baseline: str | None = None
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def chosen_row(self) -> dict[str, Any] | None:
        """The measured row of the chosen variant (``None`` when it was chosen by name, unmeasured)."""
        return self.variants.get(self.chosen)

    @property
    def metric_drop(self) -> float | None:
        """The chosen variant's measured metric drop versus torch fp32."""
        row = self.chosen_row or {}
        value = row.get("metric_drop")
        return float(value) if isinstance(value, int | float) else None

    def summary(self) -> dict[str, Any]:
        """The small part worth carrying in model store metadata: choice, budget, drop, latency, size."""
        row = self.chosen_row or {}
        keep = ("metric_drop", "p50_batch1", "p50_batch64", "size_bytes", "size_ratio")
        return {"chosen": self.chosen, "budget": self.budget, "objective": self.objective, "metric": self.metric,
                **{k: row[k] for k in keep if k in row}}


@dataclass
class BaselinesSection(Section):
    """The baselines a data scientist tries first, fitted on the network's own preprocessed split.

    ``models`` maps a baseline's name (``logistic`` or ``ridge``, and ``hist_gradient_boosting``)
    to its estimator, fit seconds and ``valid``/``test`` metrics; ``network`` holds the network's
    metrics on the same rows. The release gate, the model card and the Train panel read it.
    """

    NAME: ClassVar[str] = "baselines"

    metric: str = ""
    higher_is_better: bool = True
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    network: dict[str, dict[str, float]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def score(self, name: str, split: str = "test") -> float | None:
        """The primary metric of baseline ``name`` (or ``"network"``) on ``split``."""
        source = self.network if name == "network" else self.models.get(name, {})
        value = source.get(split, {}).get(self.metric)
        return float(value) if isinstance(value, int | float) else None

    def best(self, split: str = "test") -> tuple[str, float] | None:
        """The best baseline on ``split`` and its metric (``None`` without baselines)."""
        scored = [(n, v) for n in self.models if (v := self.score(n, split)) is not None]
        if not scored:
            return None
        return max(scored, key=lambda kv: kv[1] if self.higher_is_better else -kv[1])

    def gap(self, network: float | None = None, split: str = "test") -> float | None:
        """How far the network trails the best baseline (positive: the baseline is better).

        Args:
            network: The network's metric to compare (default: the one recorded at training).
            split: Which split's baseline metric.
        """
        best = self.best(split)
        mine = self.score("network", split) if network is None else network
        if best is None or mine is None:
            return None
        return (best[1] - mine) if self.higher_is_better else (mine - best[1])

    def table(self, split: str = "test") -> pd.DataFrame:
        """One row per model (network first), one column per metric on ``split``, plus fit seconds."""
        import pandas as pd

        rows = [{"model": "network", **self.network.get(split, {})}]
        rows += [{"model": name, **m.get(split, {}), "fit_seconds": m.get("seconds")}
                 for name, m in self.models.items()]
        return pd.DataFrame(rows).set_index("model")

    def __str__(self) -> str:
        best, gap = self.best(), self.gap()
        head = f"baselines on the same split ({self.rows.get('test', '?')} test rows)"
        if best is not None and gap is not None:
            head += (f": best {best[0]} {self.metric} {best[1]:.4f}, network "
                     f"{self.score('network'):.4f} ({'trails by' if gap > 0 else 'leads by'} {abs(gap):.4f})")
        return head + "\n" + self.table().to_string(float_format=lambda v: f"{v:.4f}")

    def _repr_html_(self) -> str:
        html: str = f"<p>{str(self).splitlines()[0]}</p>" + self.table().to_html(float_format=lambda v: f"{v:.4f}")
        return html


@dataclass
class Check:
    """One release-gate check's outcome. ``skipped`` checks count as passed and say why in ``reason``."""

    name: str
    passed: bool
    value: Any
    threshold: Any
    reason: str
    skipped: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    warning: bool = False

    @property
    def status(self) -> str:
        """``skip``, ``pass``, ``warn`` (passed, but a limit configured to warn was exceeded) or ``FAIL``."""
        if self.skipped:
            return "skip"
        return ("warn" if self.warning else "pass") if self.passed else "FAIL"


@dataclass
class GateReport(Section):
    """The release gate's verdict: pass/fail with one reason per check, the thresholds and the data used.

    :func:`kit.gate.check` returns one; ``bundle.gate`` reads the one stored in a bundle: the
    verdict packaging relies on, with every gate run on the bundle in ``history`` (see
    :mod:`kit.gate._history` for when a later run replaces a failure).

    Attributes:
        run: This run's number on the bundle (1 for the first; 0 when not recorded in a bundle).
        override: When this run replaced a failure with other settings: the reason, the run it
            replaced, the differences, who and when.
        history: Every gate run on the bundle, oldest first (config, result, accepted, note).
    """

    NAME: ClassVar[str] = "gate"

    passed: bool = False
    checks: list[Check] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    run: int = 0
    override: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    @property
    def failures(self) -> list[str]:
        """One line per failed check."""
        return [f"{c.name}: {c.reason}" for c in self.failed]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``failures`` added for readers that only want the reasons)."""
        out = super().to_dict()
        out["failures"] = self.failures
        return out

    @classmethod
    def from_dict(cls: type[S], values: Mapping[str, Any]) -> S:
        """Rebuild, with each check as a :class:`Check`."""
        section = super().from_dict({k: v for k, v in values.items() if k != "failures"})
        checks = getattr(section, "checks", [])
        section.checks = [c if isinstance(c, Check) else Check(**c) for c in checks]  # type: ignore[attr-defined]
        return section

    def table(self) -> pd.DataFrame:
        """One row per check: status, value, threshold, reason."""
        import pandas as pd

        rows = [{"check": c.name, "status": c.status, "value": _short(c.value), "threshold": _short(c.threshold),
                 "reason": c.reason} for c in self.checks]
        return pd.DataFrame(rows).set_index("check")

    def __str__(self) -> str:
        head = f"gate {'PASSED' if self.passed else 'FAILED'}"
        if not self.passed:
            head += f": {', '.join(c.name for c in self.failed)} failed"
        if self.run:
            head += f" (run {self.run} of {len(self.history) or self.run})"
        lines = [head, f"{'':4}  {'check':22} {'value':>9} {'limit':>9}  reason"]
        lines += [f"{c.status:4}  {c.name:22} {_short(c.value):>9} {_short(c.threshold):>9}  {c.reason}"
                  for c in self.checks]
        if self.extra.get("note"):
            lines.append(f"verdict: {self.extra['note']}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        color = "#1a7f37" if self.passed else "#cf222e"
        run = f" (run {self.run})" if self.run else ""
        note = f"<p>{html.escape(str(self.extra['note']))}</p>" if self.extra.get("note") else ""
        return (f"<p><b style='color:{color}'>gate {'passed' if self.passed else 'failed'}{run}</b></p>" + note
                + self.table().to_html())


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


SECTION_TYPES: dict[str, type[Section]] = {
    cls.NAME: cls for cls in (TuningSection, ExplanationSection, QuantizationSection, GateReport, BaselinesSection)}
"""Typed sections by manifest key."""
