"""The BentoML model store: put a bundle in, get it back, list what is there.

A store entry (``name:version``) holds a saved :class:`~kit.bundle.ModelBundle` directory, so
loading goes through ``ModelBundle.load`` (sha256-verified, no pickle). Labels say what the
model is (task, dataset, runtime, variant, gate status); metadata says how it was made
(metrics, configs, quantization summary, lineage).
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit._home import bentoml_home
from kit._json import to_json
from kit.errors import ConfigError, KitError, require

if TYPE_CHECKING:
    from kit.bundle import ModelBundle
    from kit.sections import GateReport

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")


def default_name(source: str) -> str:
    """The store name a model gets when none is given: ``kit-`` and its dataset's name.

    ``source`` is a built-in dataset name or a file path (a bundle's ``data_config.source``); the
    folder and extension are dropped and the rest lowercased, with runs of other characters than
    letters, digits, ``.``, ``_`` and ``-`` made one ``-``: ``"breast_cancer"`` gives
    ``"kit-breast_cancer"``, ``"data/Churn 2024.csv"`` gives ``"kit-churn-2024"``.
    """
    stem = Path(source.replace("\\", "/").rsplit("/", 1)[-1]).stem if source else ""
    return "kit-" + (re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._") or "model")


class GateFailedError(KitError):
    """The bundle's release gate failed and ``force`` was not given."""

    status_code = 409


def _jsonable(value: Any) -> Any:
    """JSON types only, with ``None`` dropped (BentoML metadata refuses ``None``)."""
    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): strip(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [strip(x) for x in v if x is not None]
        return v

    return strip(to_json(value))


def save(bundle: ModelBundle, name: str, force: bool = False, *, reason: str | None = None,
         by: str = "python") -> str:
    """Put a bundle into the BentoML model store.

    The store entry says which gate run it relied on: label ``gate_run`` and metadata
    ``gate.run`` (with the run's config, result and any override); see :func:`gate_line`.

    Args:
        bundle: The model to store.
        name: Store name (lowercase letters, digits, ``-``, ``_``, ``.``).
        force: Store it even if its release gate failed (recorded in labels and metadata).
        reason: Why it was forced (recorded).
        by: ``python`` or ``cli``: the refusal message tells that interface's way to go on.

    Returns:
        The tag, ``name:version``.

    Raises:
        ConfigError: On an invalid name.
        GateFailedError: If the gate failed and ``force`` is false.
    """
    bentoml = require("bentoml", "serve")
    if not _NAME.match(name):
        raise ConfigError(f"model name must be lowercase letters, digits, '-', '_' or '.', but got {name=}",
                          field="name")
    status = bundle.gate_status
    report = bundle.gate
    if status == "failed" and not force:
        raise GateFailedError(_refusal(report, by), field="gate")
    forced = status == "failed" and force
    runtime = bundle.runtime_info
    dataset = bundle.lineage.get("data_name") or bundle.lineage.get("dataset") or "unknown"
    labels = {"kit": "bundle", "task": bundle.task, "dataset": str(dataset),
              "runtime": str(runtime.get("name", "torch")), "variant": str(runtime.get("variant", "fp32")),
              "gate": status, "gate_run": str(report.run) if report is not None else "none",
              "forced": "true" if forced else "false"}
    quant = bundle.quantization
    metadata = _jsonable({
        "metrics": bundle.metrics, "configs": bundle.configs, "lineage": bundle.lineage,
        "quantization": quant.summary() if quant is not None else None, "runtime": runtime,
        "gate": _gate_summary(bundle),
        "network": {"builder": bundle.net.builder, "target": bundle.net.target, "params": bundle.net.params,
                    "source_sha256": bundle.net.source_sha256},
        "baselines": _baselines_summary(bundle),
        "schema": bundle.schema, "primary_metric": bundle.primary_metric,
        "force": {"forced": forced, "by": _user(), "at": _now(), "reason": reason} if forced else None,
    })
    with bentoml.models.create(name, labels=labels, metadata=metadata) as model:
        bundle.save(model.path)
    return str(model.tag)


def _refusal(report: GateReport | None, by: str) -> str:
    """Why packaging refuses, and how to go on, in the words of the user's interface."""
    from kit.gate._history import how_to_force, how_to_override

    if report is None:
        return "the release gate failed for this bundle"
    run = f" (run {report.run})" if report.run else ""
    text = f"the release gate failed for this bundle{run}: {'; '.join(report.failures)}"
    pending = report.extra.get("pending")
    if pending:
        text += f". A later run {pending.removeprefix('not accepted: ')}; to replace the failure, {how_to_override(by)}"
    return f"{text}. Fix the model, or package it anyway with {how_to_force(by)}"


def gate_line(bundle: ModelBundle) -> str:
    """One sentence naming the gate run a stored model relies on (what ``kit package`` prints)."""
    report = bundle.gate
    if report is None:
        return "no release gate run: stored unchecked (run kit gate / kit.gate.gate first)"
    total = len(report.history) or report.run
    verdict = "passed" if report.passed else "FAILED"
    override = (f", an override of failed run {report.override.get('replaces_run')}: {report.override.get('reason')}"
                if report.override else "")
    return f"relies on gate run {report.run} of {total} ({verdict}, {report.created_at}{override})"


def _gate_summary(bundle: ModelBundle) -> dict[str, Any] | None:
    """The gate's verdict for store metadata: the run relied on, its config and result, the history."""
    report = bundle.gate
    if report is None:
        return None
    return {"run": report.run, "passed": report.passed, "failures": report.failures,
            "created_at": report.created_at, "config": report.config, "override": report.override,
            "data": report.data, "checks": {c.name: c.status for c in report.checks},
            "runs": [{k: h.get(k) for k in ("run", "passed", "accepted", "note", "by", "created_at")}
                     for h in report.history], "statement": gate_line(bundle)}


def _baselines_summary(bundle: ModelBundle) -> dict[str, Any] | None:
    """The best baseline on the test split and how far the network is from it."""
    section = bundle.baselines
    best = section.best() if section is not None else None
    if section is None or best is None:
        return None
    return {"metric": section.metric, "best": best[0], "best_value": best[1], "gap": section.gap()}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return os.environ.get("USER", "unknown")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _store_model(tag: str) -> Any:
    bentoml = require("bentoml", "serve")
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise KitError(f"model {tag!r} is not in the model store at {bentoml_home()}", field="tag") from None


def load(tag: str | None = None) -> ModelBundle:
    """Load the bundle stored under ``tag`` (default: the served model, see :func:`~kit.package.served`)."""
    from kit.bundle import ModelBundle
    from kit.package._resolve import served

    return ModelBundle.load(served(tag).path)
