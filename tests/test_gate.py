import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kit.bundle import ModelBundle
from kit.card import card, write_card
from kit.errors import ConfigError
from kit.gate import CHECKS, GateConfig, GateReport, check, expected_calibration_error, gate
from kit.quantize import attach

NO_SHAP = GateConfig(skip=("explanation_stability",))


def by_name(report: GateReport) -> dict:
    return {c.name: c for c in report.checks}


@pytest.fixture(scope="module")
def bc_gated(bc_bundle):
    return gate(bc_bundle)


def test_good_binary_model_passes_every_check_and_the_report_is_stored(bc_bundle, bc_gated, tmp_path: Path):
    gated, report = bc_gated
    checks = by_name(report)
    assert report.passed and list(checks) == list(CHECKS)
    assert checks["metric"].value == pytest.approx(bc_bundle.metrics["test"]["accuracy"])
    # the floor defaults to the majority-class accuracy of the same split
    assert 0.5 < checks["metric"].threshold < checks["metric"].value
    assert checks["runtime_drop"].value == 0.0 and "by construction" in checks["runtime_drop"].reason
    assert checks["latency_p99"].details["p99_ms"] >= checks["latency_p99"].details["p50_ms"] > 0
    assert checks["slice_gap"].skipped and checks["calibration"].value < 0.1
    assert not checks["explanation_stability"].skipped and checks["explanation_stability"].value >= 0.6
    # the packaging step reads exactly sections["gate"]["passed"]; it survives save/load
    assert "gate" not in bc_bundle.sections
    loaded = ModelBundle.load(gated.save(tmp_path / "b"))
    assert loaded.sections["gate"]["passed"] is True
    assert {"name", "passed", "value", "threshold", "reason"} <= set(loaded.sections["gate"]["checks"][0])
    assert GateReport.from_dict(loaded.sections["gate"]).to_dict() == report.to_dict()


def test_untrained_network_fails_the_metric_floor(bc_bundle):
    blank = bc_bundle.copy()
    blank.weights = {k: np.zeros_like(v) for k, v in blank.weights.items()}
    report = check(blank, config=NO_SHAP)
    metric = by_name(report)["metric"]
    # constant outputs predict one class for every row: at best the majority-class baseline
    assert not report.passed and not metric.passed and metric.value <= metric.threshold
    assert "not >=" in metric.reason and str(report).startswith("gate FAILED: metric")


def test_tight_thresholds_fail_with_a_reason_each(bc_bundle):
    config = NO_SHAP.replace(max_p99_ms=1e-6, max_ece=0.0, metric_floor=0.999)
    checks = by_name(check(bc_bundle, config=config))
    for name in ("latency_p99", "calibration", "metric"):
        assert not checks[name].passed and checks[name].reason
    assert "over 1e-06 ms" in checks["latency_p99"].reason


def test_quantized_runtime_drop_is_measured_against_fp32(bc_bundle):
    int8 = attach(bc_bundle, "ort-int8-dynamic")
    drop = by_name(check(int8, config=NO_SHAP.replace(skip=("explanation_stability", "latency_p99"))))["runtime_drop"]
    fp32, chosen = drop.details["fp32"], drop.details["runtime"]
    assert fp32 == pytest.approx(bc_bundle.metrics["test"]["accuracy"])
    assert drop.value == pytest.approx(fp32 - chosen)
    assert "ort-int8-dynamic" in drop.reason


def test_slice_gap_on_a_categorical_column(mixed_result):
    checks = by_name(check(mixed_result.bundle, config=NO_SHAP.replace(slice_column="color", min_slice_rows=5)))
    slices = checks["slice_gap"].details["slices"]
    assert {"red", "green", "blue"} <= set(slices)
    assert checks["slice_gap"].value == pytest.approx(max(slices.values()) - min(slices.values()))
    with pytest.raises(ConfigError, match="slice column 'nope' is not a feature"):
        check(mixed_result.bundle, config=NO_SHAP.replace(slice_column="nope"))


def test_regression_gate_uses_std_units_and_skips_calibration(diabetes_result):
    checks = by_name(check(diabetes_result.bundle, config=NO_SHAP))
    assert checks["calibration"].skipped and "regression" in checks["calibration"].reason
    assert "target std" in checks["noise_robustness"].reason
    assert checks["metric"].value == pytest.approx(diabetes_result.bundle.metrics["test"]["r2"])


def test_broken_schema_contract_fails_instead_of_raising(mixed_result):
    broken = mixed_result.bundle.copy()
    broken.preprocessor.modes_["color"] = "purple"  # the example now holds an unseen category
    report = check(broken, config=NO_SHAP.replace(skip=("explanation_stability", "latency_p99",
                                                        "missing_robustness")))
    schema = by_name(report)["schema_contract"]
    assert not report.passed and not schema.passed and "purple" in schema.reason


def test_expected_calibration_error():
    y = np.array([0, 0, 1, 1])
    # confident and right: no calibration error
    assert expected_calibration_error(y, np.eye(2)[y]) == 0.0
    # always 90% sure of class 0, right half of the time: |0.5 - 0.9| = 0.4
    proba = np.tile([0.9, 0.1], (4, 1))
    assert expected_calibration_error(y, proba) == pytest.approx(0.4)


@pytest.mark.parametrize(("changes", "field"), [({"max_p99_ms": -1.0}, "max_p99_ms"), ({"top_k": 0}, "top_k"),
                                                ({"skip": ("nope",)}, "skip"), ({"metric": "auc"}, "metric"),
                                                ({"baseline_action": "ignore"}, "baseline_action"),
                                                ({"max_baseline_gap": -0.1}, "max_baseline_gap")])
def test_config_refuses_bad_values_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        GateConfig().replace(**changes)
    assert info.value.field == field


def test_card_renders_every_section_from_the_bundle(bc_gated):
    gated, _ = bc_gated
    enriched = gated.with_section("tuning", {"study_name": "s", "best_value": 0.1, "params": {"lr": 0.01}})
    c = card(enriched)
    md, page = c.markdown(), c.html()
    for heading in ("Overview", "Data", "Metrics", "Baselines", "Network", "Training", "Tuning", "Explanations",
                    "Quantization", "Release gate", "Lineage"):
        assert f"## {heading}" in md and f"<h2>{heading}</h2>" in page
    # the network section: builder, source sha256, the export check, and the source text itself
    assert "| builder | mlp |" in md and gated.net.source_sha256 in md and "```python" in md
    assert "def build(n_in: int, n_out: int" in md and "<pre><code>" in page
    assert "| logistic |" in md and "hist_gradient_boosting" in md
    assert "| lr | 0.01 |" in md and "explanation_stability" in md
    assert "No quantization recorded" in md and "No compression recorded" in md
    assert gated.lineage["data_hash"] in md and "<script" not in page
    # a table model has no Images section; its samples per class and split are under Data
    counts = gated.lineage["class_counts"]
    assert "## Images" not in md and "Samples per class and split:" in md
    assert f"| {counts['labels'][0]} | {counts['train'][0]} | {counts['valid'][0]} | {counts['test'][0]} |" in md


def test_card_escapes_html(bc_bundle):
    hostile = bc_bundle.with_section("tuning", {"study_name": "<script>alert(1)</script>"})
    assert "<script>alert" not in card(hostile).html() and "&lt;script&gt;" in card(hostile).html()


def run_kit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kit.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_gate_exit_codes_report_and_card(bc_bundle, tmp_path: Path):
    src = bc_bundle.save(tmp_path / "bc")
    proc = run_kit("gate", "--bundle", str(src), "--out", str(tmp_path / "gated"), "--card", str(tmp_path / "card"),
                   "--skip", "explanation_stability")
    assert proc.returncode == 0, proc.stderr
    assert "gate PASSED" in proc.stdout and "latency_p99" in proc.stdout
    assert ModelBundle.load(tmp_path / "gated").sections["gate"]["passed"] is True
    assert "Release gate" in (tmp_path / "card" / "MODEL_CARD.md").read_text()
    assert (tmp_path / "card" / "model_card.html").read_text().startswith("<!DOCTYPE html>")

    # a failing gate exits 1 and is still recorded (packaging will refuse it)
    proc = run_kit("gate", "--bundle", str(src), "--max-p99-ms", "0.000001", "--skip", "explanation_stability")
    assert proc.returncode == 1 and "gate FAILED: latency_p99 failed" in proc.stdout
    assert json.loads((src / "bundle.json").read_text())["sections"]["gate"]["passed"] is False

    # bad input: one line, exit 2, no traceback
    proc = run_kit("gate", "--bundle", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "bundle.json is missing" in proc.stderr


def test_cli_card_command(bc_bundle, tmp_path: Path):
    src = bc_bundle.save(tmp_path / "bc")
    proc = run_kit("card", "--bundle", str(src), "--out", str(tmp_path / "card"))
    assert proc.returncode == 0 and "No release gate recorded" in (tmp_path / "card" / "MODEL_CARD.md").read_text()
    assert write_card(bc_bundle, tmp_path / "c2")[0].name == "MODEL_CARD.md"


def test_packaging_refuses_a_failed_gate_naming_the_check(bc_bundle):
    from kit import package

    failed = bc_bundle.with_section(check(bc_bundle, config=NO_SHAP.replace(max_p99_ms=1e-6)))
    assert failed.sections["gate"]["failures"][0].startswith("latency_p99: p99")
    # refused before anything is written to the model store
    with pytest.raises(package.GateFailedError, match="latency_p99"):
        package.save(failed, "bc")


def test_cli_keeps_every_gate_run_and_a_laxer_pass_needs_a_reason(bc_bundle, tmp_path: Path):
    """#18 item 5: re-running without the failing option does not clear the failure; --override-reason does."""
    src = bc_bundle.save(tmp_path / "bc")
    strict = ["--max-p99-ms", "0.000001", "--skip", "explanation_stability"]
    assert run_kit("gate", "--bundle", str(src), *strict).returncode == 1
    lax = run_kit("gate", "--bundle", str(src), "--skip", "explanation_stability")
    # the run passed, but the bundle's verdict is still run 1: exit 1, and the way out in CLI words
    assert lax.returncode == 1 and "gate PASSED" in lax.stdout and "not accepted" in lax.stdout
    assert "--override-reason" in lax.stdout
    gate_section = json.loads((src / "bundle.json").read_text())["sections"]["gate"]
    assert gate_section["run"] == 1 and not gate_section["passed"] and len(gate_section["history"]) == 2
    refused = run_kit("package", "--bundle", str(src), "--name", "bc")
    assert refused.returncode == 2 and "kit package --bundle BUNDLE --name NAME --force" in refused.stderr
    assert "kit.package.save" not in refused.stderr and "--override-reason" in refused.stderr
    ok = run_kit("gate", "--bundle", str(src), "--skip", "explanation_stability", "--override-reason", "typo in limit")
    assert ok.returncode == 0, ok.stdout
    verdict = ModelBundle.load(src).gate
    assert verdict.run == 3 and verdict.override["reason"] == "typo in limit" and verdict.override["by"] == "cli"
    assert [h["accepted"] for h in verdict.history] == [True, False, True]


def test_a_pass_with_the_same_settings_replaces_a_failure_without_a_reason(bc_bundle):
    from kit.gate._history import laxer

    failed, _ = gate(bc_bundle, config=NO_SHAP.replace(max_p99_ms=1e-6))
    # the same settings again: a re-measurement, not laxer (a latency pass on a quieter machine counts)
    assert laxer(failed.gate, check(bc_bundle, config=NO_SHAP.replace(max_p99_ms=1e-6))) == []
    # a higher limit, or skipping the failed check, is laxer
    assert laxer(failed.gate, check(bc_bundle, config=NO_SHAP)) == ["latency_p99 with max_p99_ms 1e-06 -> 50.0"]
    skipped = check(bc_bundle, config=NO_SHAP.replace(max_p99_ms=1e-6, skip=("explanation_stability", "latency_p99")))
    assert laxer(failed.gate, skipped)[0].startswith("latency_p99 skipped (was max_p99_ms=1e-06")
    # quantizing makes another model: its gate verdict is gone, not carried over
    from kit.quantize import attach

    assert "gate" not in attach(failed, "ort-fp32").sections


@pytest.fixture(scope="module")
def weak_bundle():
    """A barely trained network: the logistic regression on the same split beats it clearly."""
    import kit
    from kit.train import train

    return train("breast_cancer", kit.TrainConfig(epochs=1, patience=0, lr=1e-5, warmup_epochs=0)).bundle


def test_baseline_check_warns_by_default_and_fails_when_told(weak_bundle):
    fast = NO_SHAP.replace(skip=("explanation_stability", "latency_p99", "noise_robustness", "missing_robustness"))
    report = check(weak_bundle, config=fast)
    baseline = by_name(report)["baseline"]
    section = weak_bundle.baselines
    # the gap is the one recorded at training: best baseline minus the network, on the same test rows
    assert baseline.value == pytest.approx(section.gap()) and baseline.value > 0.005
    assert baseline.passed and baseline.warning and baseline.status == "warn"
    assert baseline.reason.startswith("warning: network accuracy") and "recorded at training" in baseline.reason
    assert baseline.threshold == 0.005 and "the shared budget" in baseline.reason
    assert "warn  baseline" in str(report)
    failing = check(weak_bundle, config=fast.replace(baseline_action="fail"))
    assert not failing.passed and [c.name for c in failing.failed] == ["baseline"]
    # a wider budget lets it through without a warning
    wide = by_name(check(weak_bundle, config=fast.replace(max_baseline_gap=1.0)))["baseline"]
    assert wide.status == "pass" and "GateConfig.max_baseline_gap" in wide.reason


def test_baseline_check_fits_the_baselines_when_the_bundle_has_none(bc_bundle):
    bare = bc_bundle.copy()
    bare.sections.pop("baselines", None)
    fast = NO_SHAP.replace(skip=("explanation_stability", "latency_p99", "noise_robustness", "missing_robustness"))
    baseline = by_name(check(bare, config=fast))["baseline"]
    assert "fitted now on the train split" in baseline.reason
    assert set(baseline.details["baselines"]) == {"logistic", "hist_gradient_boosting"}
    recorded = by_name(check(bc_bundle, config=fast))["baseline"]
    assert recorded.details["baselines"] == pytest.approx(baseline.details["baselines"])


def test_a_failed_baseline_check_is_not_cleared_by_a_warning_run(weak_bundle):
    """The gate history treats baseline_action and max_baseline_gap as the baseline check's settings."""
    from kit.gate._history import laxer

    fast = NO_SHAP.replace(skip=("explanation_stability", "latency_p99", "noise_robustness", "missing_robustness"))
    failed, report = gate(weak_bundle, config=fast.replace(baseline_action="fail"))
    assert not report.passed and failed.gate.run == 1
    assert laxer(failed.gate, check(weak_bundle, config=fast)) == ["baseline with baseline_action 'fail' -> 'warn'"]
    kept, warned = gate(failed, config=fast)
    assert warned.passed and not kept.gate.passed and kept.gate.run == 1
    assert [h["accepted"] for h in kept.gate.history] == [True, False]
