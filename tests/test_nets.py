"""Bring your own network: the builder contract, references, parameters, source records and checks.

``custom_net`` (tests/custom_net.py) stands for a user's module; builders that must vanish or
change are written to a temporary folder put on ``sys.path`` for one test.
"""

from __future__ import annotations

import importlib
import json
import linecache
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import kit
from kit import nets
from kit.bundle import ModelBundle
from kit.errors import BuilderError, CodeChangedError, ConfigError
from kit.train import Callback, train
from kit.tune import Space

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"epochs": 4, "patience": 0}


class Began(Callback):
    def __init__(self) -> None:
        self.began = False

    def on_train_begin(self, config, n_train):
        self.began = True


# --- references and the zoo ---------------------------------------------------------------------------

def test_the_zoo_goes_through_the_same_registry_as_user_builders():
    assert nets.names()[:3] == ["mlp", "resmlp", "ft_transformer"]
    for name in ("mlp", "resmlp", "ft_transformer"):
        builder = nets.resolve(name)
        assert builder.target == f"kit.nets.{name}:build" and builder.registered and builder.builtin
    # A registered import path resolves like the built-ins; re-registering replaces (a cell run twice).
    nets.register("my_resnet", "custom_net:build")
    try:
        assert nets.resolve("my_resnet").target == "custom_net:build" and "my_resnet" in nets.names()
        nets.register("my_resnet", "custom_net:build_wrong_shape")
        assert nets.resolve("my_resnet").target == "custom_net:build_wrong_shape"
    finally:
        nets.unregister("my_resnet")
    with pytest.raises(ConfigError, match="built-in"):
        nets.register("mlp", lambda n_in, n_out: None)
    with pytest.raises(ConfigError, match="no ':'"):
        nets.register("a:b", lambda n_in, n_out: None)


def test_an_import_path_builder_trains_and_the_bundle_describes_it(tmp_path: Path):
    result = train("wine", kit.TrainConfig(net="custom_net:build", net_params={"width": 16, "blocks": 1}, **QUICK))
    spec = result.bundle.net
    assert (spec.builder, spec.target, spec.params) == ("custom_net:build", "custom_net:build",
                                                      {"width": 16, "blocks": 1})
    assert spec.defaults == {"dropout": 0.1} and (spec.n_in, spec.n_out) == (13, 3)
    # The source is the module file, recorded with its sha256; loading never runs it (only imports by name).
    text = (ROOT / "tests" / "custom_net.py").read_text()
    assert spec.source_kind == "module" and spec.source_sha256 == nets.sha256_text(text)
    out = result.bundle.save(tmp_path / "b")
    assert (out / "network_source.txt").read_text() == text
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["spec"]["source"]["file"] == "network_source.txt"
    assert {"network_source.txt", "network.onnx", "weights.safetensors"} <= set(manifest["files"])
    loaded = ModelBundle.load(out)
    np.testing.assert_allclose(loaded.predict_proba(loaded.example(3)), result.bundle.predict_proba(loaded.example(3)),
                               atol=1e-6)


@pytest.mark.parametrize(("net", "params", "field", "message"), [
    ("resnet_tabular", {}, "net", "unknown network 'resnet_tabular'; known: mlp, resmlp, ft_transformer"),
    ("no_such_module:build", {}, "net", "cannot be imported: No module named 'no_such_module'"),
    ("custom_net:nope", {}, "net", "module custom_net has no attribute 'nope'"),
    ("custom_net:build_wrong_shape", {}, "net", "returns (2, 4) for a (2, 13) batch; the contract is (batch, n_out)"),
    ("custom_net:build_not_a_module", {}, "net", "returned a dict, not a torch.nn.Module"),
    ("custom_net:build", {"depth": 3}, "net_params.depth", "has no parameter 'depth'"),
    ("custom_net:build", {"blocks": 0}, "net_params.blocks", "failed to build with"),
    ("custom_net:build", {"width": {1, 2}}, "net_params.width", "must be a JSON value"),
    ("resmlp", {"width": 0}, "net_params.width", "width must be a positive integer"),
    ("ft_transformer", {"d_token": 30, "heads": 4}, "net_params.d_token", "multiple of heads"),
])
def test_contract_violations_name_the_builder_and_parameter_before_training(net, params, field, message):
    began = Began()
    with pytest.raises(BuilderError) as info:
        train("wine", kit.TrainConfig(net=net, net_params=params, **QUICK), callbacks=[began])
    assert info.value.field == field and message in info.value.message
    assert not began.began  # refused before the first epoch


def test_mlp_shorthand_fields_are_builder_parameters_given_once():
    # The rule: hidden / dropout / activation / norm, when set, are parameters like net_params.
    assert kit.TrainConfig(hidden=(64,)).net_kwargs() == kit.TrainConfig(net_params={"hidden": [64]}).net_kwargs()
    assert kit.TrainConfig().net_kwargs() == {}  # None: the builder's own defaults (the recipe lives there)
    with pytest.raises(ConfigError, match="given twice") as info:
        kit.TrainConfig(dropout=0.2, net_params={"dropout": 0.3})
    assert info.value.field == "dropout"
    # A builder without such a parameter refuses it, naming the field it came from.
    with pytest.raises(BuilderError, match="no parameter 'hidden' \\(given as hidden\\)") as err:
        train("wine", kit.TrainConfig(net="custom_net:build", hidden=(8,), **QUICK))
    assert err.value.field == "hidden"
    # ... and one that takes it gets it: dropout reaches resmlp.
    result = train("wine", kit.TrainConfig(net="resmlp", dropout=0.25, **QUICK), baselines=False)
    assert result.bundle.net.params == {"dropout": 0.25}


# --- tuning keys ----------------------------------------------------------------------------------------

def test_search_space_net_keys_set_builder_parameters():
    base = kit.TrainConfig(net="custom_net:build", net_params={"dropout": 0.0})
    space = Space({"net.width": "int(8, 32, log)", "net.blocks": "int(1, 3)", "lr": "float(1e-4, 1e-2, log)"}, base)
    config = space.to_config({"net.width": 16, "net.blocks": 2, "lr": 0.001})
    assert config.net_params == {"dropout": 0.0, "width": 16, "blocks": 2} and config.lr == 0.001
    # net.<shorthand> sets the field: dropout and net.dropout mean the same
    mlp = Space({"net.dropout": "float(0, 0.5)"}).to_config({"net.dropout": 0.2})
    assert mlp.dropout == 0.2 and mlp == Space({"dropout": "float(0, 0.5)"}).to_config({"dropout": 0.2})
    with pytest.raises(ConfigError, match="has no parameter 'depth'") as info:
        Space({"net.depth": "int(1, 3)"}, base)
    assert info.value.field == "net.depth"
    # Bounds the builder refuses are found before any trial, once the shapes are known.
    bad = Space({"net.blocks": "int(0, 2)"}, base)
    with pytest.raises(ConfigError, match="refuses value 0") as info:
        bad.check_network(13, 3)
    assert info.value.field == "net.blocks"


def test_default_spaces_come_from_the_builders():
    from kit.tune import DEFAULT_SPACE, TRAINING_SPACE, default_space

    assert default_space("mlp") == DEFAULT_SPACE
    assert set(default_space("resmlp")) == {"net.width", "net.blocks", "dropout", *TRAINING_SPACE}
    assert {"net.d_token", "net.blocks"} <= set(default_space("ft_transformer"))
    assert set(default_space("custom_net:build")) == {"dropout", *TRAINING_SPACE}  # no search_space attribute
    for net in ("resmlp", "ft_transformer"):
        Space(None, kit.TrainConfig(net=net)).check_network(10, 2)


def test_registered_builders_cannot_reach_spawned_tuning_workers(tmp_path: Path):
    from kit.tune import tune

    nets.register("local_only", "custom_net:build")
    try:
        with pytest.raises(ConfigError, match="registered in this process only") as info:
            tune("wine", n_trials=2, n_workers=2, run_dir=str(tmp_path), train=kit.TrainConfig(net="local_only"))
        assert info.value.field == "net"
    finally:
        nets.unregister("local_only")


# --- builders defined in a notebook ---------------------------------------------------------------------

CELL = '''
import torch
from torch import nn

class TinyNet(nn.Module):
    def __init__(self, n_in, n_out, width):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, n_out))

    def forward(self, x):
        return self.body(x){extra}

def build(n_in, n_out, width=8):
    return TinyNet(n_in, n_out, width)
'''


def notebook_builder(extra: str = "", cell: int = 1):
    """Define a builder the way a notebook cell does: module ``__main__``, source only in linecache."""
    filename = f"<ipython-input-{cell}-kit>"
    source = CELL.format(extra=extra)
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace["build"]


def test_a_notebook_builder_records_its_function_and_classes_and_refuses_a_change(tmp_path: Path):
    nets.register("cell_net", notebook_builder())
    try:
        config = kit.TrainConfig(net="cell_net", net_params={"width": 8}, **QUICK)
        bundle = train("wine", config, baselines=False).bundle
        spec = bundle.net
        assert spec.source_kind == "function" and spec.target == "__main__:build"
        source = bundle.artifacts["network_source.txt"].decode()
        assert "def build(n_in, n_out, width=8)" in source and "class TinyNet(nn.Module)" in source
        out = bundle.save(tmp_path / "b")
        # The cell is edited and run again: the torch runtime refuses the changed network ...
        nets.register("cell_net", notebook_builder(extra=" * 2", cell=2))
        loaded = ModelBundle.load(out)
        with pytest.raises(CodeChangedError, match="changed since this model was trained") as info:
            loaded.predict(loaded.example(1))
        assert info.value.field == "net"
        # ... unless told otherwise, which the lineage records (and keeps through save and load).
        allowed = ModelBundle.load(out, allow_changed_code=True)
        assert len(allowed.predict(allowed.example(2))) == 2
        change = allowed.lineage["code_changes"][0]
        assert change["recorded_sha256"] == spec.source_sha256 != change["current_sha256"]
        again = ModelBundle.load(allowed.save(tmp_path / "c"))
        assert again.lineage["code_changes"] == allowed.lineage["code_changes"]
        # The ONNX export made at the first save still serves, with no builder at all.
        assert "network.onnx" in again.artifacts and again.spec["onnx"]["max_abs_diff"] <= 1e-4
    finally:
        nets.unregister("cell_net")


# --- a builder that vanishes or changes ------------------------------------------------------------------

@pytest.fixture()
def vanishing(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A module ``vanish_net`` in a temporary folder on sys.path (removed again after the test)."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "vanish_net.py").write_text((ROOT / "tests" / "custom_net.py").read_text())
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    try:
        yield "vanish_net:build", folder
    finally:
        _forget(folder)


def _forget(folder: Path) -> None:
    """The module is gone: off sys.path and out of sys.modules."""
    if str(folder) in sys.path:
        sys.path.remove(str(folder))
    sys.modules.pop("vanish_net", None)
    importlib.invalidate_caches()


def test_torch_runtime_refuses_a_missing_builder_and_onnx_serves_without_it(vanishing, tmp_path: Path):
    from kit.quantize import attach, compare, select

    ref, folder = vanishing
    bundle = train("breast_cancer", kit.TrainConfig(net=ref, net_params={"width": 16}, epochs=15, patience=0)).bundle
    out = bundle.save(tmp_path / "b")
    _forget(folder)
    loaded = ModelBundle.load(out)  # loading needs no code
    with pytest.raises(BuilderError, match="'vanish_net:build' cannot be imported: No module named 'vanish_net'"):
        loaded.predict(loaded.example(1))
    # Quantizing needs no builder either: the stored fp32 export is the reference, and the report says why.
    report = compare(loaded, variants=["ort-fp32", "ort-int8-dynamic"], repeats=10, warmup=2)
    status = report.frame.loc["torch-fp32", "status"]
    assert status.startswith("failed: torch-fp32 could not run: network builder 'vanish_net:build' cannot")
    assert report.settings["reference"].startswith("stored fp32 ONNX graph (network.onnx)")
    assert report.frame.loc["ort-fp32", "metric_drop"] == 0.0 and report.frame.loc["ort-fp32", "max_abs_diff"] < 1e-5
    served = attach(loaded, select(report))
    assert served.runtime_info["name"] == "onnxruntime"
    X = served.reload_data().splits.test.X
    np.testing.assert_allclose(served.predict_proba(X), bundle.predict_proba(X), atol=0.05)
    # The gate measures the runtime against the stored fp32 graph, saying so.
    from kit.gate import GateConfig, check

    report = check(served, config=GateConfig(skip=("explanation_stability", "latency_p99")))
    drop = next(c for c in report.checks if c.name == "runtime_drop")
    assert drop.status in ("pass", "FAIL") and "stored fp32 ONNX graph" in drop.reason


CLI = "import sys; from kit.cli import main; sys.exit(main(sys.argv[1:]))"


def _cli(args: list[str], cwd: Path, pythonpath: str = "") -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath, "HOME": str(Path.home())}
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=300, env=env,
                          cwd=cwd)


def test_missing_or_changed_builder_is_one_clear_cli_line(vanishing, tmp_path: Path):
    ref, folder = vanishing
    out = train("wine", kit.TrainConfig(net=ref, **QUICK), baselines=False).bundle.save(tmp_path / "b")
    args = ["gate", "--bundle", str(out), "--skip", "explanation_stability"]
    missing = _cli(args, tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [
        "kit gate: error: network builder 'vanish_net:build' cannot be imported: No module named 'vanish_net' "
        "(is vanish_net.py or its package on sys.path / PYTHONPATH?) [field=net]"]
    (folder / "vanish_net.py").write_text((folder / "vanish_net.py").read_text() + "\n# an edit\n")
    changed = _cli(args, tmp_path, pythonpath=str(folder))
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert len(changed.stderr.strip().splitlines()) == 1
    assert "kit gate: error: the source of network builder 'vanish_net:build'" in changed.stderr
    assert "changed since this model was trained" in changed.stderr and "allow_changed_code=True" in changed.stderr


# --- old bundles, exports ------------------------------------------------------------------------------

def test_a_bundle_from_before_builders_still_loads_and_predicts(tmp_path: Path):
    result = train("wine", kit.TrainConfig(net_params={"skip": False}, hidden=(16,), **QUICK), baselines=False)
    old = result.bundle.copy()
    # kit.bundle/1 before builders: the spec named the MLP and held its fields; no source record.
    old.spec = {"name": "mlp", "n_in": 13, "n_out": 3, "hidden": [16], "dropout": 0.3, "activation": "relu",
                "norm": "none"}
    old.artifacts = {}
    loaded = ModelBundle.load(old.save(tmp_path / "old"))
    assert loaded.net.builder == "mlp" and loaded.net.source_sha256 is None
    X = result.splits.test.X
    np.testing.assert_allclose(loaded.predict_proba(X), result.bundle.predict_proba(X), atol=1e-6)


def test_the_export_is_made_at_save_kept_and_redone_for_new_weights(bc_bundle, tmp_path: Path):
    from kit.quantize import EXPORT_ATOL, stored_graph

    bundle = bc_bundle.copy()
    bundle.spec.pop("onnx", None)  # as train() made it (another test may have saved the shared bundle)
    bundle.artifacts.pop("network.onnx", None)
    assert stored_graph(bundle) is None
    out = bundle.save(tmp_path / "a")
    record = bundle.spec["onnx"]
    assert record["max_abs_diff"] <= EXPORT_ATOL and record["batch_sizes_checked"] == [1, 5, 64]
    assert json.loads((out / "bundle.json").read_text())["spec"]["onnx"] == record
    graph = bundle.artifacts["network.onnx"]
    bundle.save(tmp_path / "b")  # unchanged weights: the same graph, not a new export
    assert bundle.artifacts["network.onnx"] is graph
    name = next(iter(bundle.weights))
    bundle.weights[name] = bundle.weights[name] * 1.5
    assert stored_graph(bundle) is None  # stale for these weights
    bundle.save(tmp_path / "c")
    assert bundle.spec["onnx"]["weights_sha256"] != record["weights_sha256"]


@pytest.mark.parametrize("net", ["resmlp", "ft_transformer"])
def test_zoo_networks_export_to_onnx_and_agree_with_torch(net, tmp_path: Path):
    result = train("wine", kit.TrainConfig(net=net, epochs=3, patience=0), baselines=False)
    loaded = ModelBundle.load(result.bundle.save(tmp_path / net))
    assert loaded.spec["onnx"]["max_abs_diff"] <= 1e-4 and loaded.spec["onnx"]["exporter"] == "dynamo"
    onnx = loaded.copy().set_runtime("onnxruntime", artifact="network.onnx")
    X = result.splits.test.X
    np.testing.assert_allclose(onnx.predict_proba(X), loaded.predict_proba(X), atol=1e-5)


def test_source_text_of_an_unreadable_builder_is_refused():
    namespace: dict = {"__name__": "__main__"}
    exec("import torch\ndef build(n_in, n_out):\n    return torch.nn.Linear(n_in, n_out)\n", namespace)
    nets.register("typed_in", namespace["build"])
    try:
        with pytest.raises(BuilderError, match="cannot read the source"):
            train("wine", kit.TrainConfig(net="typed_in", **QUICK))
    finally:
        nets.unregister("typed_in")


def test_the_recorded_source_is_data_never_executed(tmp_path: Path):
    # Put code in network_source.txt that would leave a mark if anything ran it: loading and
    # predicting on torch import the builder by name instead, and the mark never appears.
    mark = tmp_path / "executed"
    bundle = train("wine", kit.TrainConfig(net="custom_net:build", **QUICK), baselines=False).bundle
    bundle.artifacts["network_source.txt"] = f"open({str(mark)!r}, 'w').write('ran')\n".encode()
    out = bundle.save(tmp_path / "b")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from kit.bundle import ModelBundle
        b = ModelBundle.load({str(out)!r})
        print(len(b.predict(b.example(2))), b.runtime_info["name"])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "torch"] and not mark.exists()
