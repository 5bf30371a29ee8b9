"""Every gate run is kept: which report a bundle's verdict rests on, and when a pass may replace a failure.

A bundle's ``sections["gate"]`` is the *effective* report (the one packaging relies on) and its
``history`` lists every run on this bundle: number, config, result, who ran it, and whether it
was accepted. The rule, stated once:

* a run that fails always becomes the verdict;
* a run that passes after a failed verdict replaces it only if every check that failed was run
  again with the same settings (a re-measurement, e.g. latency on a quieter machine);
* a passing run that skipped a failed check or changed its settings (another slice column, a
  higher limit, other data) is *laxer*: it replaces the failure only as an **override with a
  reason**, recorded with the run it replaces. Without a reason the run is kept in the history as
  not accepted, and the failure stands.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kit.errors import KitError
from kit.sections import GateReport

CHECK_FIELDS: dict[str, tuple[str, ...]] = {
    "metric": ("metric", "metric_floor"),
    "baseline": ("metric", "max_baseline_gap", "baseline_action"),
    "runtime_drop": ("metric", "max_metric_drop"),
    "latency_p99": ("max_p99_ms", "latency_samples"),
    "noise_robustness": ("noise_scale", "noise_repeats", "max_noise_flip_rate", "max_rows"),
    "missing_robustness": ("max_missing_flip_rate", "max_rows"),
    "calibration": ("max_ece", "ece_bins"),
    "slice_gap": ("metric", "slice_column", "max_slice_gap", "min_slice_rows"),
    "schema_contract": (),
    "explanation_stability": ("top_k", "min_topk_agreement", "background_size", "explain_rows"),
}
"""The GateConfig fields each check reads (a change to one of them changes what the check means)."""

AUDIENCES = ("python", "cli")


class GateOverrideError(KitError):
    """A passing gate run would replace a failure with laxer settings, and no reason was given."""

    status_code = 409


def laxer(failed: GateReport, run: GateReport) -> list[str]:
    """How ``run`` differs from ``failed`` on the checks that failed there (empty: the same settings).

    Args:
        failed: The failing verdict.
        run: A later run on the same bundle.

    Returns:
        One phrase per difference, e.g. ``"slice_gap skipped (was slice_column='size_band')"``.
    """
    out: list[str] = []
    checks = {c.name: c for c in run.checks}
    for check in failed.failed:
        now = checks.get(check.name)
        fields = CHECK_FIELDS.get(check.name, ())
        was = ", ".join(f"{f}={failed.config.get(f)!r}" for f in fields if failed.config.get(f) is not None)
        if now is None or now.skipped:
            out.append(f"{check.name} skipped" + (f" (was {was})" if was else ""))
            continue
        changed = [f"{f} {failed.config.get(f)!r} -> {run.config.get(f)!r}" for f in fields
                   if failed.config.get(f) != run.config.get(f)]
        if changed:
            out.append(f"{check.name} with {', '.join(changed)}")
    keys = ("name", "rows", "test_rows", "split_seed")
    if any(failed.data.get(k) != run.data.get(k) for k in keys):
        out.append(f"other data ({', '.join(f'{k}={run.data.get(k)!r}' for k in keys)})")
    return out


def entry(report: GateReport, *, accepted: bool, note: str, by: str) -> dict[str, Any]:
    """One history line: the run's number, config, result and whether it became the verdict."""
    return {"run": report.run, "passed": report.passed, "created_at": report.created_at, "by": by,
            "config": dict(report.config), "data": dict(report.data), "runtime": dict(report.runtime),
            "checks": {c.name: c.status for c in report.checks}, "failures": report.failures,
            "accepted": accepted, "note": note, "override": report.override}


def record(previous: GateReport | None, report: GateReport, *, reason: str | None = None,
           by: str = "python") -> GateReport:
    """Number ``report``, decide whether it becomes the verdict, and return the new verdict with the history.

    Args:
        previous: The bundle's current verdict (``bundle.gate``), or ``None``.
        report: The run just made (from :func:`kit.gate.check`).
        reason: Why a laxer passing run may replace a failure (recorded as an override).
        by: ``python`` or ``cli``: who ran it (recorded; error messages speak to them).

    Returns:
        The effective report: ``report`` itself, or ``previous`` when a laxer run came without a
        reason; either way its ``history`` holds every run, this one included.
    """
    history = list(previous.history) if previous is not None else []
    report.run = len(history) + 1
    report.history = []
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if previous is not None and not previous.passed and report.passed and (diff := laxer(previous, report)):
        if not reason:
            note = (f"not accepted: passed only with other settings than failed run {previous.run} "
                    f"({'; '.join(diff)}) and no reason was given, so run {previous.run} stands")
            history.append(entry(report, accepted=False, note=note, by=by))
            report.extra["note"] = note
            previous.history = history
            previous.extra["pending"] = note
            return previous
        report.override = {"reason": reason, "replaces_run": previous.run, "differences": diff, "by": by,
                           "at": now, "replaced_failures": previous.failures}
        note = f"override of failed run {previous.run}: {reason}"
    elif previous is not None and not previous.passed and report.passed:
        note = f"passed with the same settings as failed run {previous.run} (re-measured)"
    else:
        note = "passed" if report.passed else "failed"
    history.append(entry(report, accepted=True, note=note, by=by))
    report.history = history
    report.extra["note"] = note
    return report


def how_to_override(by: str, bundle_path: str | None = None) -> str:
    """The way to record an override, in the words of the user's interface."""
    if by == "cli":
        where = f" --bundle {bundle_path}" if bundle_path else " --bundle BUNDLE"
        return f"run again with a reason: kit gate{where} <the same options> --override-reason 'why'"
    return "run again with a reason: kit.gate.gate(bundle, config=..., reason='why')"


def how_to_force(by: str) -> str:
    """The way to package a failing bundle anyway, in the words of the user's interface."""
    if by == "cli":
        return "kit package --bundle BUNDLE --name NAME --force --reason 'why'"
    return "kit.package.save(bundle, name, force=True, reason='why')"
