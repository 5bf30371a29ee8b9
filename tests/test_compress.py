"""#17: compression beyond post-training quantization: structured pruning, distillation, accuracy-aware int8."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import kit
from kit.bundle import ModelBundle
from kit.cli import main
from kit.config import CompressConfig
from kit.errors import BuilderError, ConfigError
from kit.nets import mlp
from kit.quantize import EXPORT_ATOL, CompressReport, compress
from kit.quantize._frontier import REFERENCE
from kit.quantize._prune import chain_of, importance, slice_weights
from kit.runtime import OnnxRuntime

SMALL = {"sparsities": (0.5, 0.9), "finetune_epochs": 3, "students": ({"hidden": [8]},), "distill_epochs": 25,
         "calibrations": ("minmax", "entropy"), "repeats": 20, "warmup": 3}


@pytest.fixture(scope="module")
def compressed(bc_bundle):
    return compress(bc_bundle, **SMALL)


def _params(bundle: ModelBundle) -> int:
    return sum(int(np.prod(v.shape)) for v in bundle.weights.values())


def test_pruned_and_distilled_networks_are_real_smaller_networks(compressed, bc_bundle):
    report: CompressReport = compressed.report
    assert list(report.networks) == ["original", "pruned50", "pruned90", "student1", "student1-pruned50"]
    original = _params(bc_bundle)
    hidden = bc_bundle.net.params.get("hidden", bc_bundle.net.defaults.get("hidden"))
    for name, net in report.networks.items():
        if name == "original":
            continue
        # a smaller network through the builder: fewer stored weights, a new spec, weights that fit it
        assert _params(net) < original, name
        assert net.net.builder == "mlp" and net.net.params["hidden"] != hidden
        assert report.frame.loc[f"{name}/ort-fp32", "parameters"] == _params(net)
        module = net.module()
        assert sum(p.numel() for p in module.parameters()) < sum(p.numel() for p in bc_bundle.module().parameters())
    assert report.networks["pruned50"].net.params["hidden"] == [math.ceil(w * 0.5) for w in hidden]
    assert report.networks["pruned90"].net.params["hidden"] == [math.ceil(w * 0.1) for w in hidden]
    assert report.networks["student1"].net.params["hidden"] == [8]
    # stacked: the student distilled from the original, then pruned (and fine-tuned on the original's outputs)
    stacked = report.networks["student1-pruned50"]
    assert stacked.net.params["hidden"] == [4]
    assert [s["step"] for s in stacked.lineage["compression"]] == ["distill", "prune"]
    assert report.frame.loc["student1-pruned50/ort-fp32", "parameters"] < report.frame.loc["student1/ort-fp32",
                                                                                           "parameters"]


def test_smaller_networks_export_and_match_their_torch_outputs(compressed):
    x = np.random.default_rng(1).normal(size=(64, compressed.report.networks["original"].spec["n_in"]))
    x = x.astype(np.float32)
    for name, net in compressed.report.networks.items():
        if name == "original":  # its export is made when it is saved
            continue
        record = net.spec["onnx"]
        assert record["max_abs_diff"] <= EXPORT_ATOL and "network.onnx" in net.artifacts, name
        with torch.inference_mode():
            expected = net.module()(torch.from_numpy(x)).numpy()
        got = OnnxRuntime(net, model=net.artifacts["network.onnx"]).run(x)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=name)


def test_the_choice_respects_the_budget_on_validation_and_reports_the_test_split(compressed, bc_bundle):
    report, chosen = compressed.report, compressed.bundle
    assert report.chosen != REFERENCE and report.chosen.split("/")[0] != "original"
    data = bc_bundle.reload_data()
    drops = {}
    for split, prefix in ((data.splits.valid, ""), (data.splits.test, "test_")):
        X, y = split.X, data.dataset.decode_target(split.y)
        before, after = bc_bundle.evaluate(X, y)["accuracy"], chosen.evaluate(X, y)["accuracy"]
        assert report.frame.loc[report.chosen, f"{prefix}metric_drop"] == pytest.approx(before - after)
        assert report.frame.loc[REFERENCE, f"{prefix}metric"] == pytest.approx(before)
        drops[prefix] = before - after
    assert drops[""] <= report.budget + 1e-12  # chosen on validation; the test drop is only reported
    assert "on validation" in compressed.reason and "on test" in compressed.reason
    assert report.settings["rows"] == len(data.splits.valid) and report.settings["test_rows"] == len(data.splits.test)
    # it is the fastest qualifying candidate, beyond the noise, and it serves from ONNX Runtime
    ok = report.frame[report.frame["metric_drop"] <= report.budget + 1e-12]
    fastest = ok["p50_batch64"].min()
    assert report.frame.loc[report.chosen, "p50_batch64"] - fastest <= report.frame["p50_batch64_noise"].max() + 1e-9
    assert chosen.runtime_info["name"] == "onnxruntime" and compressed.reason.startswith(report.chosen)


def test_every_candidate_has_its_lineage_in_the_report_and_the_bundle(compressed, tmp_path: Path):
    report = compressed.report
    for name, row in report.frame.iterrows():
        lineage = row["lineage"]
        assert lineage[0].startswith("mlp(") and len(lineage) >= 2, name
        if name.startswith("pruned90"):  # stacked: prune 50% -> prune 90% -> runtime
            assert [s.split(" ")[0] for s in lineage[1:3]] == ["prune", "prune"], lineage
        if name.startswith("student1"):
            assert lineage[1].startswith("distill into mlp("), lineage
        if name.endswith("int8-static"):
            assert lineage[-1].startswith("ort-int8-static ("), lineage
    saved = ModelBundle.load(compressed.bundle.save(tmp_path / "chosen"))
    section = saved.sections["compression"]
    assert section["chosen"] == report.chosen and section["budget"] == report.budget
    assert {r["variant"] for r in section["rows"]} == set(report.frame.index)
    assert all(r["lineage"] for r in section["rows"])
    steps = saved.lineage["compression"]
    assert steps and steps[-1]["step"] in ("prune", "distill") and steps[-1]["parameters"] == _params(saved)
    assert saved.configs["compress"]["budget"] == report.budget
    assert saved.quantization is not None
    assert saved.quantization.chosen == report.frame.loc[report.chosen, "runtime_variant"]


def test_every_int8_configuration_tried_is_logged(compressed):
    for network, tried in compressed.report.int8.items():
        assert len(tried) >= 4, network  # two calibration methods x per-channel or per-tensor weights
        assert {(t["method"], t["per_channel"]) for t in tried} >= {("minmax", True), ("minmax", False),
                                                                    ("entropy", True), ("entropy", False)}
        assert sum(t["chosen"] for t in tried) == 1
        for t in tried:
            assert t["p50_batch1"] > 0 and t["p50_batch64"] > 0 and math.isfinite(t["metric_drop"])


def test_report_json_and_plot(compressed, tmp_path: Path):
    data = json.loads(json.dumps(compressed.report.to_json()))
    assert data["chosen"] == compressed.report.chosen and data["budget"] == 0.005
    row = next(r for r in data["rows"] if r["variant"] == data["chosen"])
    assert {"metric_drop", "p50_batch1_us", "p50_batch64_us", "size_bytes", "lineage", "batch_invariant"} <= set(row)
    fig = compressed.report.plot()
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
    assert "chosen:" in str(compressed.report)


def test_the_model_card_shows_the_compression_frontier(compressed, bc_bundle):
    from kit import quantize
    from kit.card import card

    report = compressed.report
    md = card(compressed.bundle).markdown()
    section = md[md.index("## Compression"):md.index("## Release gate")]
    chosen = report.frame.loc[report.chosen]
    reference = report.frame.loc[REFERENCE]
    # the chosen candidate: how it was made, its size, its speed-up against the original in torch, its drop
    assert f"| chosen | {report.chosen} |" in section and ("distill into" in section or "prune " in section)
    assert f"| size | {int(chosen['size_bytes']):,} bytes" in section
    speedup = reference["p50_batch1"] / chosen["p50_batch1"]
    assert f"{speedup:.2f}x at batch 1" in section and f"budget {report.budget:.4g}" in section
    assert f"| metric drop (positive = worse) | {chosen['metric_drop']:.4g} |" in section
    assert f"| test metric drop | {chosen['test_metric_drop']:.4g} |" in section and "validation split" in section
    # ... and every other row of the frontier, the chosen one marked
    for name in report.frame.index:
        assert f"| {name}{' (chosen)' if name == report.chosen else ''} | " in section, name
    # a bundle only quantized gets the same figures for its runtime variants; one never compressed says so
    quantized = quantize.attach(bc_bundle, quantize.select(quantize.compare(
        bc_bundle, variants=("torch-fp32", "ort-fp32", "ort-int8-static"), repeats=10, warmup=2)))
    md = card(quantized).markdown()
    section = md[md.index("## Compression"):md.index("## Release gate")]
    q = quantized.quantization
    assert q is not None and f"chosen: {q.chosen}" in section and "| ort-int8-static" in section
    assert "speed-up vs torch-fp32" in section and "| torch-fp32 | ok |" in section.replace(" (chosen)", "")
    assert "No compression recorded" in card(bc_bundle).markdown()


def test_a_budget_no_candidate_meets_returns_the_original_with_the_reason(bc_bundle):
    hopeless = {"hidden": [1], "skip": False, "dropout": 0.0}
    result = compress(bc_bundle, budget=0.0, sparsities=(), students=(hopeless,), distill_epochs=1, int8=False,
                      repeats=10, warmup=2)
    assert result.bundle is bc_bundle
    assert result.report.chosen.startswith("original/")
    assert "the original stays" in result.reason
    assert result.report.frame.loc["student1/ort-fp32", "metric_drop"] > 0
    assert any(r.startswith("student1/ort-fp32: rejected: metric drop") for r in result.report.reasons)


def test_stop_and_time_budget_keep_what_was_built(bc_bundle):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 1  # the first poll passes: one pruning step, then stop

    result = compress(bc_bundle, sparsities=(0.5, 0.9), students=({"hidden": [8]},), finetune_epochs=2,
                      int8=False, repeats=10, warmup=2, should_stop=stop)
    assert "pruned50" in result.report.networks and "student1" not in result.report.networks
    assert any("stopped" in s for s in result.report.skipped)


def test_networks_that_are_not_linear_chains_are_skipped_with_the_reason():
    import custom_net

    with pytest.raises(BuilderError, match="not a chain of Linear layers"):
        chain_of(custom_net.build(10, 2))
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Conv1d(1, 1, 1))
    with pytest.raises(BuilderError, match=r"layer 2 \(Conv1d\)"):
        chain_of(module)


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_slicing_keeps_the_network_it_cuts(norm):
    torch.manual_seed(0)
    net = mlp.build(6, 3, hidden=[16, 12], norm=norm, dropout=0.0).eval()
    if norm == "batch":  # non-trivial running statistics
        net.train()
        net(torch.randn(64, 6) * 3)
        net.eval()
    chain = chain_of(net)
    weights = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    scores = importance(net, chain, x)
    assert [len(s) for s in scores] == [16, 12]
    # keeping every unit (in any order) is the same network
    kept = slice_weights(weights, chain, [np.arange(16)[::-1], np.arange(12)])
    same = mlp.build(6, 3, hidden=[16, 12], norm=norm, dropout=0.0).eval()
    same.load_state_dict({k: torch.from_numpy(v) for k, v in kept.items()})
    with torch.inference_mode():
        np.testing.assert_allclose(same(torch.from_numpy(x)).numpy(), net(torch.from_numpy(x)).numpy(), atol=1e-5)
    # cutting units gives a network of the smaller shape
    cut = slice_weights(weights, chain, [np.array([0, 3, 5]), np.array([1, 2])])
    small = mlp.build(6, 3, hidden=[3, 2], norm=norm, dropout=0.0)
    small.load_state_dict({k: torch.from_numpy(v) for k, v in cut.items()})
    if norm != "layer":  # removing a unit whose activation is zero leaves the outputs unchanged
        dead = {k: v.copy() for k, v in weights.items()}
        dead["deep.0.weight"][4:] = 0.0
        dead["deep.0.bias"][4:] = -1.0 if norm == "none" else dead["deep.0.bias"][4:]
        if norm == "none":
            net.load_state_dict({k: torch.from_numpy(v) for k, v in dead.items()})
            alive = slice_weights(dead, chain, [np.arange(4), np.arange(12)])
            smaller = mlp.build(6, 3, hidden=[4, 12], norm=norm, dropout=0.0).eval()
            smaller.load_state_dict({k: torch.from_numpy(v) for k, v in alive.items()})
            with torch.inference_mode():
                np.testing.assert_allclose(smaller(torch.from_numpy(x)).numpy(), net(torch.from_numpy(x)).numpy(),
                                           atol=1e-5)


def test_compress_config_checks_name_the_field():
    for bad, field in (({"sparsities": (0.9, 0.5)}, "sparsities"), ({"sparsities": (1.0,)}, "sparsities"),
                       ({"calibrations": ("kl",)}, "calibrations"), ({"alpha": 1.5}, "alpha"),
                       ({"temperature": 0}, "temperature"), ({"time_budget": -1}, "time_budget"),
                       ({"students": ([32],)}, "students"), ({"budget": -0.1}, "budget")):
        with pytest.raises(ConfigError) as info:
            CompressConfig(**bad)
        assert info.value.field == field
    smoke = CompressConfig().smoke()
    assert len(smoke.sparsities) == 2 and len(smoke.students) == 1 and smoke.repeats <= 50
    assert CompressConfig.from_dict(CompressConfig().to_dict()) == CompressConfig()


def test_cli_compress_writes_the_bundle_and_the_json_report(bc_bundle, tmp_path: Path, capsys):
    src = bc_bundle.save(tmp_path / "in")
    code = main(["compress", "--bundle", str(src), "--out", str(tmp_path / "out"), "--budget", "0.01",
                 "--sparsities", "0.75", "--students", '[{"hidden": [8]}]', "--calibrations", "minmax",
                 "--repeats", "10", "--time-budget", "600", "--report", str(tmp_path / "r.json"),
                 "--plot", str(tmp_path / "f.png")])
    printed = capsys.readouterr().out
    assert code == 0 and "chosen:" in printed and "... prune 75% of hidden units" in printed
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["budget"] == 0.01 and written["chosen"] in {r["variant"] for r in written["rows"]}
    loaded = ModelBundle.load(tmp_path / "out")
    assert loaded.sections["compression"]["chosen"] == written["chosen"]
    assert (tmp_path / "f.png").stat().st_size > 0


def test_cli_compress_names_a_bad_option(bc_bundle, tmp_path: Path, capsys):
    src = bc_bundle.save(tmp_path / "in")
    code = main(["compress", "--bundle", str(src), "--out", str(tmp_path / "out"), "--students", "[{hidden: 8}]"])
    assert code == 2 and "--students must be a JSON list" in capsys.readouterr().err
    code = main(["compress", "--bundle", str(src), "--out", str(tmp_path / "out"), "--sparsities", "0.5,x"])
    assert code == 2 and "[field=sparsities]" in capsys.readouterr().err


def test_int8_nodes_that_cost_accuracy_fall_back_to_fp32(bc_bundle):
    """The search returns matrix-multiply nodes to fp32, greedily, while the budget is missed."""
    import onnx

    from kit.quantize import reference_graph
    from kit.quantize._calibrate import named, search_int8

    graph, _ = reference_graph(bc_bundle)
    _, weighted = named(graph)
    calibration = np.ascontiguousarray(bc_bundle.transform(bc_bundle.reload_data().splits.train.X))

    def measure(candidate: bytes) -> dict[str, float]:  # every int8 weight costs 0.01: a stand-in for accuracy
        model = onnx.load_from_string(candidate)
        int8 = sum(t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2 for t in model.graph.initializer)
        return {"metric": 0.9 - 0.01 * int8, "metric_drop": 0.01 * int8, "p50_batch1": 1.0, "p50_batch64": 2.0}

    found = search_int8(graph, calibration, measure, budget=0.015, methods=("minmax",), fallback_nodes=2)
    assert len(weighted) == 4  # the default mlp: two hidden layers, the head and the linear shortcut
    assert len(found.config["fp32_nodes"]) == 2 and found.metric_drop < found.tried[0]["metric_drop"]
    # two configurations (per-channel, per-tensor), then one try per node and step
    assert len(found.tried) == 2 + len(weighted) + (len(weighted) - 1)
    assert [t["chosen"] for t in found.tried].count(True) == 1


def test_regression_networks_compress_on_standardized_targets(diabetes_result):
    bundle = diabetes_result.bundle
    result = compress(bundle, sparsities=(0.5,), students=({"hidden": [16]},), finetune_epochs=2, distill_epochs=5,
                      calibrations=("minmax",), repeats=10, warmup=2, budget=0.05)
    frame = result.report.frame
    assert result.report.metric == "r2" and set(result.report.networks) == {"original", "pruned50", "student1",
                                                                         "student1-pruned50"}
    assert frame.loc[REFERENCE, "test_metric"] == pytest.approx(bundle.metrics["test"]["r2"])
    if result.bundle is not bundle:
        data = bundle.reload_data()
        X, y = data.splits.valid.X, data.splits.valid.y
        assert bundle.evaluate(X, y)["r2"] - result.bundle.evaluate(X, y)["r2"] <= 0.05 + 1e-9


def test_a_custom_network_says_what_was_skipped_and_distills_into_a_builtin(tmp_path: Path):
    """A residual user network cannot be pruned safely; its students are built by name and served from ONNX."""
    from kit.train import train

    bundle = train("breast_cancer", kit.TrainConfig(net="custom_net:build", net_params={"width": 32}, epochs=5),
                   baselines=False).bundle
    same_builder = compress(bundle, sparsities=(0.5,), students=({"hidden": [8]},), int8=False, repeats=10,
                            warmup=2)
    skipped = " | ".join(same_builder.report.skipped)
    assert "pruning: a ResNetTab is not a chain of Linear layers" in skipped
    assert "network 'custom_net:build' has no parameter 'hidden'" in skipped
    assert list(same_builder.report.networks) == ["original"]
    into_mlp = compress(bundle, sparsities=(), students=({"hidden": [8], "dropout": 0.0},), student_net="mlp",
                        int8=False, repeats=10, warmup=2, budget=0.05)
    student = into_mlp.report.networks["student1"]
    assert student.net.builder == "mlp" and student.net.params == {"hidden": [8], "dropout": 0.0}
    assert student.lineage["compression"][0]["teacher"].startswith("custom_net:build(")
    loaded = ModelBundle.load(student.save(tmp_path / "student"))
    data = bundle.reload_data()
    assert len(loaded.predict(data.splits.test.X)) == len(data.splits.test.X)


def test_a_spent_time_budget_measures_what_exists_and_keeps_the_original(bc_bundle):
    result = compress(bc_bundle, time_budget=1e-6, repeats=10, warmup=2)
    report = result.report
    assert list(report.networks) == ["original"] and result.bundle is bc_bundle
    assert set(report.frame.index) == {REFERENCE, "original/ort-fp32"}
    assert any(s.startswith("pruning: stopped before sparsity 0.5") for s in report.skipped)
    assert any("not started (stopped)" in s for s in report.skipped)
    assert "original: int8 not tried (stopped)" in report.skipped
