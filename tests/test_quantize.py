import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit.bundle import ModelBundle
from kit.cli import main
from kit.errors import ConfigError, DataError, IntegrityError
from kit.quantize import (
    BASELINE,
    VARIANTS,
    ExportError,
    QuantReport,
    attach,
    compare,
    export_onnx,
    latency_by_batch,
    select,
)

FAST = {"repeats": 20, "warmup": 3}


@pytest.fixture(scope="module")
def bc_rows(bc_bundle):
    data = bc_bundle.reload_data()
    return data.splits.test.X, data.dataset.decode_target(data.splits.test.y), data.splits.train.X


@pytest.fixture(scope="module")
def bc_report(bc_bundle, bc_rows) -> QuantReport:
    X, y, train_X = bc_rows
    return compare(bc_bundle, X, y, calibration=train_X, **FAST)


def test_reloaded_rows_are_the_training_test_split(bc_result, bc_rows):
    X, y, train_X = bc_rows
    # reload_data re-splits with the stored seed, so its test rows are the ones the bundle was scored on
    pd.testing.assert_frame_equal(X, bc_result.splits.test.X)
    assert len(train_X) == len(bc_result.splits.train.X)
    assert bc_result.bundle.evaluate(X, y) == bc_result.bundle.metrics["test"]


def test_every_variant_matches_fp32_within_its_tolerance(bc_report):
    frame = bc_report.frame
    assert list(frame.index) == list(VARIANTS)
    assert (frame["status"] == "ok").all()
    for name, row in frame.iterrows():
        # probabilities within the variant's stated tolerance of torch fp32 on the test split
        assert row["max_abs_diff"] <= VARIANTS[name].tolerance, name
        assert row["within_tolerance"], name
        assert row["label_agreement"] >= 0.97, name
    # the fp32 ONNX graph is numerically the torch network
    assert frame.loc["ort-fp32", "max_abs_diff"] < 1e-5
    assert frame.loc["ort-fp32", "label_agreement"] == 1.0


def test_report_measures_latency_size_and_load_time(bc_report, bc_bundle):
    frame = bc_report.frame
    for col in ("p50_batch1", "p99_batch1", "p50_batch64", "p99_batch64", "rows_per_s", "load_ms"):
        assert (frame[col] > 0).all(), col
    assert (frame["p99_batch1"] >= frame["p50_batch1"]).all()
    # int8 graphs hold one byte per weight: well under a third of the fp32 safetensors
    assert frame.loc["ort-int8-dynamic", "size_ratio"] > 3.0
    assert frame.loc["ort-fp16", "size_ratio"] > 1.7
    assert frame.loc[BASELINE, "metric"] == pytest.approx(bc_bundle.metrics["test"]["accuracy"])
    assert bc_report.export["max_abs_diff"] <= bc_report.export["atol"]
    assert "accuracy" in bc_report.table() and "ort-int8-static" in bc_report.table()


def test_regression_variants_report_value_differences(diabetes_result):
    bundle, test = diabetes_result.bundle, diabetes_result.splits.test
    report = compare(bundle, test.X, test.y, variants=["ort-fp32", "ort-int8-dynamic", "ort-fp16"], **FAST)
    frame = report.frame
    assert report.metric == "r2" and frame["label_agreement"].isna().all()
    assert frame["within_tolerance"].all()
    # int8 stays close to fp32 in target units (diabetes targets span ~25..346)
    assert frame.loc["ort-int8-dynamic", "max_abs_diff"] < 0.05 * bundle.target_scaling["std"]
    assert abs(frame.loc["ort-int8-dynamic", "metric_drop"]) < 0.02


def _fake_report(drops: dict[str, float], p50: dict[str, float], failed: tuple[str, ...] = ()) -> QuantReport:
    rows = {name: {"status": "failed: boom" if name in failed else "ok", "metric": 0.95 - drop,
                   "metric_drop": drop, "p50_batch1": p50[name], "p99_batch1": 2 * p50[name],
                   "p50_batch64": 10 * p50[name], "p99_batch64": 20 * p50[name], "size_bytes": 100}
            for name, drop in drops.items()}
    return QuantReport(pd.DataFrame.from_dict(rows, orient="index"), "accuracy", "binary")


def test_select_picks_the_fastest_variant_within_budget():
    report = _fake_report({"torch-fp32": 0.0, "ort-fp32": 0.0, "ort-int8-dynamic": 0.004, "ort-int8-static": 0.02},
                          {"torch-fp32": 50.0, "ort-fp32": 9.0, "ort-int8-dynamic": 7.0, "ort-int8-static": 5.0})
    choice = select(report, budget=0.005)
    # static is fastest but over budget; dynamic is the fastest that qualifies
    assert choice.variant == "ort-int8-dynamic"
    assert any(r.startswith("ort-int8-static: rejected: metric drop") for r in choice.reasons)
    assert any(r.startswith("ort-fp32: slower") for r in choice.reasons)
    # a looser budget admits static; another objective can change the answer
    assert select(report, budget=0.05).variant == "ort-int8-static"
    assert select(report, 0.005, objective="p99_batch64").variant == "ort-int8-dynamic"


def test_select_ignores_differences_within_the_measurement_noise():
    """#18 item 7: 12.11 vs 12.29 µs with ±0.3 µs of noise is a tie; the simplest variant wins it, every run."""
    report = _fake_report({"torch-fp32": 0.0, "ort-fp32": 0.0, "ort-fp16": 0.0, "ort-int8-dynamic": 0.0},
                          {"torch-fp32": 50.0, "ort-fp32": 12.29, "ort-fp16": 12.11, "ort-int8-dynamic": 12.2})
    report.frame["p50_batch1_noise"] = [2.0, 0.6, 0.6, 0.6]
    choice = select(report, budget=0.005)
    # fp16 and dynamic int8 are not faster beyond the noise: exact, batch-invariant ort-fp32 is chosen
    assert choice.variant == "ort-fp32" and "within measurement noise" in choice.reasons[1]
    assert any(r.startswith("ort-int8-dynamic: tied within noise") for r in choice.reasons)
    for fp16 in (12.0, 12.35):  # the choice does not flip with the order of noisy measurements
        report.frame.loc["ort-fp16", "p50_batch1"] = fp16
        assert select(report, budget=0.005).variant == "ort-fp32"
    # beyond the noise, the faster one wins
    report.frame.loc["ort-fp16", "p50_batch1"] = 9.0
    assert select(report, budget=0.005).variant == "ort-fp16"


def test_measured_noise_is_in_the_report_and_the_panel(bc_report):
    frame = bc_report.frame
    assert (frame["p50_batch1_noise"] >= 0).all() and (frame["p99_batch64_noise"] >= 0).all()
    assert not frame.loc["ort-int8-dynamic", "batch_invariant"] and frame.loc["ort-int8-static", "batch_invariant"]


def test_select_falls_back_to_fp32_when_nothing_qualifies():
    report = _fake_report({"torch-fp32": 0.0, "ort-int8-dynamic": 0.03, "ort-fp16": 0.0},
                          {"torch-fp32": 50.0, "ort-int8-dynamic": 7.0, "ort-fp16": 6.0}, failed=("ort-fp16",))
    choice = select(report, budget=0.005)
    assert choice.variant == BASELINE
    assert "no other variant qualifies" in choice.reasons[0]
    assert choice.reasons[2] == "ort-fp16: rejected: failed: boom"


def test_select_refuses_bad_settings(bc_report):
    with pytest.raises(ConfigError, match="budget"):
        select(bc_report, budget=-0.1)
    with pytest.raises(ConfigError, match="objective"):
        select(bc_report, objective="fastest")


def test_unknown_variant_is_refused(bc_bundle, bc_rows):
    X, y, _ = bc_rows
    with pytest.raises(ConfigError, match="unknown variant 'ort-int4'") as info:
        compare(bc_bundle, X, y, variants=["ort-int4"])
    assert info.value.field == "variants"
    with pytest.raises(ConfigError, match="unknown variant"):
        attach(bc_bundle, "tensorrt")


def test_static_int8_refuses_a_too_small_calibration_set(bc_bundle, bc_rows):
    X, y, train_X = bc_rows
    with pytest.raises(DataError, match="calibration set too small.*10 rows") as info:
        compare(bc_bundle, X, y, variants=["ort-int8-static"], calibration=train_X[:10])
    assert info.value.field == "calibration"
    with pytest.raises(DataError, match="calibration set too small"):
        attach(bc_bundle, "ort-int8-static", calibration=train_X[:10])


def _custom_net(bc_bundle, monkeypatch, name: str, forward) -> ModelBundle:
    """The bc network with ``forward(module, x)`` around it, registered as builder ``name``."""
    import torch

    from kit import nets

    class Custom(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return forward(self.inner, x)

    mlp = nets.resolve("mlp").fn
    monkeypatch.setitem(nets._registry._REGISTRY, name, lambda n_in, n_out, **p: Custom(mlp(n_in, n_out, **p)))
    bundle = bc_bundle.copy()
    bundle.weights = {f"inner.{k}": v for k, v in bundle.weights.items()}
    bundle.spec = {**bundle.spec, "name": name, "builder": name, "target": f"tests:{name}", "source": {}}
    bundle.spec.pop("onnx", None)
    bundle.artifacts.pop("network.onnx", None)
    return bundle


def test_a_network_that_fails_to_export_keeps_torch_with_the_reason(bc_bundle, bc_rows, monkeypatch):
    import torch

    # bessel_j0 has no ONNX translation in either exporter; eager torch runs it fine
    bundle = _custom_net(bc_bundle, monkeypatch, "bessel-mlp", lambda layers, x: layers(torch.special.bessel_j0(x)))
    X, y, _ = bc_rows
    report = compare(bundle, X, y, variants=["ort-fp32", "ort-int8-dynamic"], **FAST)
    assert report.frame.loc[BASELINE, "status"] == "ok"
    status = report.frame.loc["ort-fp32", "status"]
    assert status.startswith("failed: network 'bessel-mlp' cannot be exported") and "bessel_j0" in status
    choice = select(report)
    assert choice.variant == BASELINE and "cannot be exported" in " ".join(choice.reasons)
    served = attach(bundle, choice)
    assert served.runtime_info["name"] == "torch" and "cannot be exported" in json.dumps(served.sections)
    with pytest.raises(ExportError, match="cannot be exported") as info:
        attach(bundle, "ort-fp32")
    assert info.value.field == "net"


def test_a_graph_that_disagrees_with_torch_is_not_accepted(bc_bundle, monkeypatch):
    # a data-dependent branch: torch.export refuses it, the TorchScript tracer bakes in one branch,
    # and the output check against torch at batch sizes 1, 5 and 64 catches the wrong graph
    bundle = _custom_net(bc_bundle, monkeypatch, "branchy-mlp",
                         lambda layers, x: layers(x) if float(x.sum()) > 0 else -layers(x))
    with pytest.raises(ExportError, match="torchscript: outputs differ from torch by"):
        export_onnx(bundle)


def test_attach_stores_the_artifact_hash_and_the_choice(bc_bundle, bc_report, bc_rows, tmp_path: Path):
    X, y, _ = bc_rows
    choice = select(bc_report, 0.005)
    served = attach(bc_bundle, choice)
    section = served.quantization
    assert section is not None
    assert section.chosen == choice.variant and section.reasons == choice.reasons and section.budget == 0.005
    # what the release gate reads: per-variant drop and p99, and the chosen row
    assert set(section.variants) == set(VARIANTS)
    assert {"metric_drop", "p99_batch1", "p50_batch64", "size_bytes"} <= set(section.variants["ort-fp32"])
    assert section.metric_drop is not None and section.metric_drop <= 0.005
    assert bc_bundle.runtime_info["name"] == "torch"  # the source bundle is unchanged

    int8 = attach(bc_bundle, "ort-int8-dynamic", report=bc_report)
    assert int8.runtime_info["artifact"] == "model.ort-int8-dynamic.onnx"
    assert int8.runtime_info["options"] == {"threads": 1, "inter_threads": 1}
    loaded = ModelBundle.load(int8.save(tmp_path / "b"))
    assert loaded.runtime_info == int8.runtime_info
    np.testing.assert_array_equal(loaded.predict_proba(X), int8.predict_proba(X))
    assert loaded.evaluate(X, y)["accuracy"] == pytest.approx(bc_report.frame.loc["ort-int8-dynamic", "metric"])


def test_artifact_hashes_are_verified_on_load(bc_bundle, bc_report, tmp_path: Path):
    served = attach(bc_bundle, "ort-fp32", report=bc_report)
    out = served.save(tmp_path / "b")
    graph = out / "model.ort-fp32.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\x00")
    with pytest.raises(IntegrityError, match="model.ort-fp32.onnx") as info:
        ModelBundle.load(out)
    assert info.value.file == str(graph)
    # an artifact swapped in memory no longer matches the sha256 in runtime_info
    swapped = served.copy()
    swapped.artifacts["model.ort-fp32.onnx"] = bc_report.artifacts["ort-fp16"]
    with pytest.raises(IntegrityError, match="does not match the sha256"):
        swapped.predict(bc_bundle.example(1))


def test_attach_builds_a_variant_without_a_report(bc_bundle, bc_rows):
    X, _, _ = bc_rows
    # no report and no calibration rows: static int8 calibrates on the bundle's own training split
    served = attach(bc_bundle, "ort-int8-static")
    agreement = np.mean(served.predict(X) == bc_bundle.predict(X))
    assert served.quantization is not None
    assert agreement >= 0.97 and served.quantization.reasons == ["chosen by name"]
    export = export_onnx(bc_bundle)[1]
    assert export["exporter"] == "dynamo" and export["batch_sizes_checked"] == [1, 5, 64]


ISOLATED = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, NoTorch())
from kit.bundle import ModelBundle
bundle = ModelBundle.load(sys.argv[1])
print(list(bundle.predict(bundle.example(3))))
assert "torch" not in sys.modules, "torch was imported"
print("torch absent")
"""


def test_an_onnx_bundle_predicts_without_torch(bc_bundle, bc_report, tmp_path: Path):
    out = attach(bc_bundle, "ort-int8-dynamic", report=bc_report).save(tmp_path / "b")
    done = subprocess.run([sys.executable, "-c", ISOLATED, str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = list(bc_bundle.predict(bc_bundle.example(3)))
    assert done.stdout.splitlines() == [str(expected), "torch absent"]


def test_pareto_plot_has_a_point_per_variant(bc_report):
    fig = bc_report.plot()
    ax = fig.axes[0]
    points = [c for c in ax.collections if c.get_label() in VARIANTS]
    assert sorted(c.get_label() for c in points) == sorted(VARIANTS)  # one point each, named in the legend
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(bc_report.frame.index)
    assert not ax.texts  # no labels beside the points that could overlap
    assert "latency" in ax.get_xlabel()


def test_summary_names_the_units_and_keeps_the_measured_numbers(bc_report):
    summary = bc_report.summary()
    assert list(summary.index) == list(bc_report.frame.index)
    assert {"p50 batch 1 (µs)", "p99 batch 1 (µs)", "p50 batch 64 (µs)", "size (KiB)"} <= set(summary.columns)
    assert summary["p50 batch 1 (µs)"].tolist() == bc_report.frame["p50_batch1"].tolist()
    assert summary["size (KiB)"].tolist() == (bc_report.frame["size_bytes"] / 1024).tolist()
    assert summary["test accuracy"].tolist() == bc_report.frame["metric"].tolist()


def test_latency_by_batch_times_every_measured_variant_at_each_size(bc_bundle, bc_report, bc_rows):
    X, _, _ = bc_rows
    lat = latency_by_batch(bc_bundle, bc_report, X, batch_sizes=(8, 1, 32))
    frame = lat.frame
    # one row per (variant, batch), sizes sorted, variants in the report's order
    assert list(frame["variant"].unique()) == list(bc_report.frame.index)
    assert frame.groupby("variant")["batch"].apply(list).map(lambda b: b == [1, 8, 32]).all()
    assert (frame["p50_us"] > 0).all() and (frame["p99_us"] >= frame["p50_us"]).all()
    # the derived columns follow from p50 and the batch size
    np.testing.assert_allclose(frame["us_per_row"], frame["p50_us"] / frame["batch"])
    np.testing.assert_allclose(frame["rows_per_s"], frame["batch"] / frame["p50_us"] * 1e6)
    assert lat.settings == {"threads": 1, "repeats": FAST["repeats"], "warmup": FAST["warmup"]}
    fig = lat.plot()
    assert [len(ax.lines) for ax in fig.axes] == [len(bc_report.frame)] * 2
    assert "batch size" in fig.axes[0].get_xlabel() and "µs" in fig.axes[0].get_ylabel()


def test_latency_by_batch_refuses_a_bad_batch_size(bc_bundle, bc_report, bc_rows):
    with pytest.raises(DataError) as info:
        latency_by_batch(bc_bundle, bc_report, bc_rows[0], batch_sizes=(0, 4))
    assert info.value.field == "batch_sizes"


def test_cli_prints_the_table_and_writes_the_bundle(bc_bundle, tmp_path: Path, capsys):
    src = bc_bundle.save(tmp_path / "in")
    code = main(["quantize", "--bundle", str(src), "--out", str(tmp_path / "out"), "--budget", "0.005",
                 "--variants", "ort-fp32,ort-int8-dynamic", "--repeats", "10", "--plot", str(tmp_path / "p.png"),
                 "--report", str(tmp_path / "r.json")])
    printed = capsys.readouterr().out
    assert code == 0 and "ort-int8-dynamic" in printed and "chosen:" in printed
    # --report: the table as JSON in the shape kit compress writes too (#17)
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["budget"] == 0.005 and written["chosen"] in {r["variant"] for r in written["rows"]}
    for row in written["rows"]:
        assert {"metric_drop", "p50_batch1_us", "p50_batch64_us", "size_bytes", "lineage"} <= set(row), row
        assert row["lineage"][0].startswith("mlp(") and row["lineage"][-1] == row["variant"]
    loaded = ModelBundle.load(tmp_path / "out")
    # the budget the user picked travels into the bundle (and from there into the store and the gate)
    assert loaded.quantization is not None and loaded.quantization.budget == 0.005
    assert loaded.runtime_info["name"] in ("torch", "onnxruntime") and (tmp_path / "p.png").stat().st_size > 0


def test_cli_reports_an_unknown_variant_in_one_line(bc_bundle, tmp_path: Path, capsys):
    src = bc_bundle.save(tmp_path / "in")
    code = main(["quantize", "--bundle", str(src), "--out", str(tmp_path / "out"), "--variants", "ort-int3"])
    assert code == 2 and "unknown variant 'ort-int3'" in capsys.readouterr().err


def test_latency_rounds_interleave_variants_and_count_every_run():
    from kit.quantize._compare import _latencies
    from kit.runtime import Runtime

    calls: list[tuple[str, int]] = []

    class Counting(Runtime):
        def __init__(self, name: str) -> None:
            self.label = name

        def run(self, x: np.ndarray) -> np.ndarray:
            calls.append((self.label, len(x)))
            return x

    batches = {1: np.zeros((1, 3), np.float32), 64: np.zeros((64, 3), np.float32)}
    out = _latencies({"a": Counting("a"), "b": Counting("b")}, batches, repeats=23, warmup=2, rounds=5)
    assert set(out) == {("a", 1), ("a", 64), ("b", 1), ("b", 64)}
    assert all(0 < p50 <= p99 and n50 >= 0 and n99 >= 0 for p50, p99, n50, n99 in out.values())
    for key in out:  # warm-up plus exactly `repeats` timed runs each
        assert calls.count(key) == 2 + 23
    timed = calls[8:]
    # Round-robin: "b" is timed before "a" has finished all of its runs (rounds, not one block each).
    assert timed.index(("b", 1)) < max(i for i, c in enumerate(timed) if c[0] == "a")
