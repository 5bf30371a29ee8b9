"""``check()`` runs every release check on the bundle's own test split; ``gate()`` stores the report."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.config import GATE_CHECKS, GateConfig
from kit.errors import ConfigError, KitError
from kit.gate._checks import RUNNERS, Context
from kit.sections import Check, GateReport

if TYPE_CHECKING:
    from kit.bundle import ModelBundle


def check(bundle: ModelBundle, data: Any = None, config: GateConfig | None = None) -> GateReport:
    """Run every release check on ``bundle`` and return the report (the bundle is not changed).

    Args:
        bundle: The bundle to gate, predicting with its chosen runtime.
        data: ``None`` reloads the bundle's own data (it must be unchanged since training); or a
            DataConfig, Dataset, path or DataFrame. The test split always uses the bundle's split
            settings (see :meth:`~kit.bundle.ModelBundle.reload_data`).
        config: Thresholds; defaults to ``GateConfig()``.

    Returns:
        The report; :func:`gate` stores it in a copy of the bundle (``bundle.gate``).

    Raises:
        ConfigError: On a bad config (e.g. an unknown slice column).
        DataError: If the data cannot be loaded or does not fit the bundle.
    """
    config = config or GateConfig()
    loaded = bundle.reload_data(data)
    dataset, split_config, splits = loaded.dataset, loaded.config, loaded.splits
    metric = config.metric or bundle.primary_metric
    if (metric in ("rmse", "mae", "r2")) != (bundle.task == "regression"):
        raise ConfigError(f"metric {metric!r} does not apply to a {bundle.task} model", field="metric")
    y_raw = dataset.decode_target(splits.test.y)
    ctx = Context(bundle, config, dataset, splits.test, splits.train, y_raw, metric,
                          np.random.default_rng(config.seed))
    checks: list[Check] = []
    for name in GATE_CHECKS:
        if name in config.skip:
            checks.append(Check(name, True, None, None, "skipped by GateConfig.skip", skipped=True))
            continue
        start = time.perf_counter()
        try:
            result = RUNNERS[name](ctx)
        except ConfigError:
            raise
        except KitError as exc:
            result = Check(name, False, None, None, f"could not run: {exc.message}")
        result.seconds = time.perf_counter() - start
        checks.append(result)
    data_info = {"name": dataset.name, "rows": len(dataset.frame), "test_rows": len(splits.test),
                 "split_seed": split_config.seed, "hash_matches_lineage": loaded.matches_lineage}
    return GateReport(passed=all(c.passed for c in checks), checks=checks, config=config.to_dict(),
                      data=data_info, runtime=dict(bundle.runtime_info),
                      created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def gate(bundle: ModelBundle, data: Any = None, config: GateConfig | None = None, *, reason: str | None = None,
         by: str = "python") -> tuple[ModelBundle, GateReport]:
    """:func:`check`, then record the run in a copy of the bundle.

    Every run is kept in ``bundle.gate.history``; the verdict (``bundle.gate``, what packaging
    relies on) follows the rule of :mod:`kit.gate._history`: a pass replaces an earlier failure
    only with the same settings for the failed checks, or as an override with ``reason``.

    Args:
        bundle: The bundle to gate.
        data: See :func:`check`.
        config: Thresholds; defaults to ``GateConfig()``.
        reason: Why a laxer passing run may replace a failed verdict (recorded as an override).
        by: Who runs it, ``python`` or ``cli`` (recorded; messages use that interface's words).

    Returns:
        ``(bundle copy with the verdict in sections["gate"], this run's report)``; the report's
        ``extra["note"]`` says whether it became the verdict.
    """
    from kit.gate._history import record

    report = check(bundle, data, config)
    previous = bundle.gate
    if previous is not None and previous.runtime and previous.runtime != report.runtime:
        previous = None  # gated on another runtime: that verdict is not about this model
    verdict = record(previous, report, reason=reason, by=by)
    gated = bundle.with_section(verdict)
    gated.configs["gate"] = verdict.config
    return gated, report
