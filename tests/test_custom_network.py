"""A user's own network through every step, with real parts: train, tune on ``net.*`` keys, explain,
quantize, package, and ``bentoml serve`` in a process where the network's module is not importable.

The network is ``custom_net:build`` (tests/custom_net.py, importable here because ``tests/`` is on
this process's path, and nowhere else). The data is a generated mixed-type CSV: ten numeric
columns on different scales, a free-text column, a constant column and missing values.
"""

from __future__ import annotations

import linecache
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from _mixed import write_mixed
from _server import serving, use_bentoml_home

import kit
from kit import explain, package, quantize
from kit.bundle import ModelBundle
from kit.errors import KitError
from kit.tune import tune

pytestmark = [pytest.mark.server, pytest.mark.slow]

SPACE = {"net.width": "int(16, 64, log)", "net.blocks": "int(1, 2)", "lr": "float(1e-3, 1e-2, log)"}


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: NaN/None become null."""
    return [{k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in r.items()}
            for r in frame.astype(object).to_dict("records")]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bentoml_home")
    use_bentoml_home(path)
    return path


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tune (3 trials on net.* keys, retrained best), explain and quantize the custom network."""
    folder = tmp_path_factory.mktemp("custom")
    data = kit.DataConfig(source=str(write_mixed(folder / "mixed.csv")), target="target")
    base = kit.TrainConfig(net="custom_net:build", net_params={"dropout": 0.1}, epochs=30, patience=8)
    tuned = tune(data, kit.TuneConfig(n_trials=3, space=SPACE, run_dir=str(folder / "tune"), epochs=15, patience=5,
                                      pruner="none"), train=base)
    bundle = tuned.bundle
    assert bundle is not None
    ex = explain.explain(bundle)
    bundle = explain.attach(bundle, ex)
    bundle = ModelBundle.load(bundle.save(folder / "explained"))  # as `kit explain --out` leaves it
    report = quantize.compare(bundle, repeats=20, warmup=3)
    choice = quantize.select(report)
    served = quantize.attach(bundle, choice.variant if choice.variant != "torch-fp32" else "ort-fp32", report=report)
    return {"tuned": tuned, "bundle": bundle, "explanation": ex, "report": report, "served": served,
            "test": bundle.reload_data().splits.test, "folder": folder}


def test_tuning_searched_the_builder_parameters(steps: dict[str, Any]) -> None:
    tuned = steps["tuned"]
    assert tuned.counts() == {"COMPLETE": 3}
    assert {"net.width", "net.blocks", "lr"} == set(tuned.best_params)
    net = steps["bundle"].net
    # the retrained bundle records the best trial's parameters as the builder's parameters
    assert net.builder == "custom_net:build" and net.params == {
        "dropout": 0.1, "width": tuned.best_params["net.width"], "blocks": tuned.best_params["net.blocks"]}
    assert steps["bundle"].baselines is not None  # the retrained model is reported next to its baselines


def test_explanations_add_up(steps: dict[str, Any]) -> None:
    ex = steps["explanation"]
    # every layer of the residual network has a DeepLIFT rule: exact, batched DeepLIFT
    assert ex.method == "deep" and ex.additivity_error <= ex.tolerance
    assert set(ex.feature_names) >= {"comment", "income"}
    # the constant column is left out of the features (and recorded), so it gets no attribution
    assert "source" not in ex.feature_names and steps["bundle"].preprocessor.constant_ == {"source": "web"}


def test_every_variant_comes_from_the_export(steps: dict[str, Any]) -> None:
    report = steps["report"]
    assert report.export["source"] == "stored export (network.onnx)"
    ok = report.frame[report.frame["status"] == "ok"]
    assert {"torch-fp32", "ort-fp32", "ort-int8-dynamic", "ort-int8-static", "ort-fp16"} <= set(ok.index)
    assert ok.loc["ort-fp32", "max_abs_diff"] < 1e-5


def test_served_without_the_module_predicts_like_the_notebook(steps: dict[str, Any], home: Path) -> None:
    served: ModelBundle = steps["served"]
    assert served.runtime_info["name"] == "onnxruntime"
    # the server's Python cannot import the network's module (same interpreter, environment and folder)
    probe = subprocess.run([sys.executable, "-c", "import custom_net"], capture_output=True, text=True,
                           env=dict(os.environ), timeout=60)
    assert probe.returncode != 0 and "No module named 'custom_net'" in probe.stderr
    tag = package.save(served, "custom-net")
    test_X = steps["test"].X
    expected = served.infer(test_X)
    with serving(tag, home) as server:
        response = httpx.post(server.url + "/predict", json={"rows": records(test_X)}, timeout=120)
        assert response.status_code == 200, server.tail()
        got = response.json()
        assert len(got) == len(test_X) == 86
        assert [g["prediction"] for g in got] == expected.labels
        proba = np.array([[g["probabilities"][label] for label in served.label_names or []] for g in got])
        np.testing.assert_allclose(proba, expected.probabilities, rtol=0, atol=1e-6)
        # /explain runs on the ONNX runtime too (permutation sampling: no torch network needed)
        explained = httpx.post(server.url + "/explain", json={"rows": records(test_X.head(2))}, timeout=120)
        assert explained.status_code == 200, explained.text
        meta = httpx.get(server.url + "/metadata", timeout=30).json()
        assert meta["runtime"]["name"] == "onnxruntime"
        assert meta["configs"]["train"]["net"] == "custom_net:build"


def test_a_torch_served_bento_carries_the_builder_module(steps: dict[str, Any], home: Path) -> None:
    import bentoml

    bundle: ModelBundle = steps["bundle"]
    assert bundle.runtime_info["name"] == "torch"
    tag = package.save(bundle, "custom-net-torch")
    bento = package.build(tag)
    src = Path(bentoml.get(bento).path) / "src"
    assert (src / "custom_net.py").read_text() == (Path(__file__).parent / "custom_net.py").read_text()
    test_X = steps["test"].X.head(30)
    with serving(None, home, bento=bento) as server:  # the bento's own copy of custom_net is imported
        response = httpx.post(server.url + "/predict", json={"rows": records(test_X)}, timeout=120)
        assert response.status_code == 200, server.tail()
        assert [g["prediction"] for g in response.json()] == bundle.infer(test_X).labels


def test_a_notebook_builder_cannot_go_into_a_torch_bento(home: Path) -> None:
    filename = "<ipython-input-9-kit>"
    source = "import torch\ndef build(n_in, n_out):\n    return torch.nn.Linear(n_in, n_out)\n"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    kit.nets.register("cell_linear", namespace["build"])
    try:
        from kit.train import train

        bundle = train("wine", kit.TrainConfig(net="cell_linear", epochs=2, patience=0), baselines=False).bundle
        tag = package.save(bundle, "cell-linear")
        with pytest.raises(KitError, match="defined in a notebook or script") as info:
            package.build(tag)
        assert info.value.field == "net"
        # quantized to ONNX, the same model needs no code and builds
        onnx_tag = package.save(quantize.attach(bundle, "ort-fp32"), "cell-linear")
        assert package.build(onnx_tag).startswith("kit:")
    finally:
        kit.nets.unregister("cell_linear")

