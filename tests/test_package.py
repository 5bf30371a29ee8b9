"""Model store, promotion log, CLI and a built bento served for real (auth on)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from _server import serving, use_bentoml_home

from kit import package
from kit.bundle import ModelBundle
from kit.cli import main
from kit.errors import KitError
from kit.train import TrainResult


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bentoml_home")
    use_bentoml_home(path)
    return path


@pytest.mark.parametrize(("source", "name"), [
    ("breast_cancer", "kit-breast_cancer"),
    ("data/Churn 2024.csv", "kit-churn-2024"),
    ("/abs/path/sales.v2.parquet", "kit-sales.v2"),
    ("C:\\data\\Customers.csv", "kit-customers"),
    ("__.csv", "kit-model"),
])
def test_default_name_is_kit_and_the_dataset_name(source: str, name: str) -> None:
    assert package.default_name(source) == name
    assert package._store._NAME.match(name)  # a name save() accepts


def test_free_port_is_bindable_on_loopback() -> None:
    import socket

    port = package.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing holds it


def test_save_records_labels_metadata_and_loads_back(home: Path, bc_bundle: ModelBundle) -> None:
    import bentoml

    from kit.sections import QuantizationSection

    bundle = bc_bundle.with_section(QuantizationSection(chosen="onnx-int8", budget=0.01,
                                                        variants={"onnx-int8": {"status": "ok"}}))
    tag = package.save(bundle, "bc-meta")
    info = bentoml.models.get(tag).info
    assert info.labels["task"] == "binary" and info.labels["dataset"] == "breast_cancer"
    assert info.labels["runtime"] == "torch" and info.labels["variant"] == "fp32"
    assert info.labels["gate"] == "unchecked" and info.labels["forced"] == "false"
    assert info.metadata["metrics"]["test"]["accuracy"] == pytest.approx(bc_bundle.metrics["test"]["accuracy"])
    assert info.metadata["lineage"]["data_hash"] == bc_bundle.lineage["data_hash"]
    assert info.metadata["configs"]["train"]["epochs"] == bc_bundle.configs["train"]["epochs"]
    # only the summary of the quantization section travels in the metadata
    assert info.metadata["quantization"] == {"chosen": "onnx-int8", "budget": 0.01}
    loaded = package.load(tag)
    X = bc_bundle.example(3)
    np.testing.assert_array_equal(loaded.predict_proba(X), bc_bundle.predict_proba(X))


def test_a_failed_gate_is_refused_unless_forced(home: Path, bc_bundle: ModelBundle) -> None:
    import bentoml

    from kit.sections import Check, GateReport

    report = GateReport(passed=False, checks=[Check("metric", False, 0.95, 0.99, "accuracy 0.95 < 0.99")])
    failing = bc_bundle.with_section(report)
    with pytest.raises(package.GateFailedError, match="metric: accuracy 0.95 < 0.99"):
        package.save(failing, "bc-gate")
    tag = package.save(failing, "bc-gate", force=True, reason="demo")
    info = bentoml.models.get(tag).info
    assert info.labels["gate"] == "failed" and info.labels["forced"] == "true"
    assert info.metadata["force"]["reason"] == "demo" and info.metadata["force"]["by"]
    passing = package.save(bc_bundle.with_section(GateReport(passed=True)), "bc-gate")
    assert bentoml.models.get(passing).info.labels["gate"] == "passed"
    with pytest.raises(KitError, match="model name"):
        package.save(bc_bundle, "Bad Name")


def test_promote_and_rollback_follow_the_log(home: Path, bc_bundle: ModelBundle) -> None:
    v1 = package.save(bc_bundle, "bc-promo")
    v2 = package.save(bc_bundle, "bc-promo")
    package.promote(v1, "first")
    entry = package.promote(v2, "better")
    assert entry["previous"] == v1 and entry["by"] and entry["at"]
    assert package.resolve("bc-promo") == v2
    back = package.rollback("bc-promo", "regression in prod")
    assert back["tag"] == v1 and back["from"] == v2
    assert package.resolve("bc-promo") == v1
    # the log is append-only: three entries, the rollback last, with its reason and the revision it made
    log = package.history("bc-promo")
    assert [e["event"] for e in log] == ["promote", "promote", "rollback"] and [e["revision"] for e in log] == [1, 2, 3]
    assert log[-1]["reason"] == "regression in prod" and log[-1]["what"] == "champion"
    with pytest.raises(KitError, match="nothing to roll back"):
        package.rollback("bc-promo")
    states = {m["tag"]: m["promotion"] for m in package.models("bc-promo")}
    assert states == {v1: "serving", v2: ""}


def test_cli_package_models_promote_predict(home: Path, bc_result: TrainResult, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bc_result.bundle.save(tmp_path / "bundle")
    assert main(["package", "--bundle", str(tmp_path / "bundle"), "--name", "bc-cli"]) == 0
    tag = capsys.readouterr().out.strip().splitlines()[-1]
    assert tag.startswith("bc-cli:")
    assert main(["promote", tag, "--reason", "cli"]) == 0
    assert main(["models", "bc-cli"]) == 0
    assert "serving" in capsys.readouterr().out
    test_x = bc_result.splits.test.X
    test_x.assign(target=bc_result.splits.test.y).to_csv(tmp_path / "in.csv", index=False)
    assert main(["predict", "--tag", tag, str(tmp_path / "in.csv"), str(tmp_path / "out.csv"),
                 "--chunk-size", "16", "-q"]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    # chunked offline scoring equals the in-process predict path, row for row
    assert out["prediction"].tolist() == bc_result.bundle.predict(test_x).tolist()
    assert main(["rollback", "bc-cli"]) == 2  # one promotion only: a clear error, exit 2


@pytest.fixture(scope="module")
def bento(home: Path, bc_bundle: ModelBundle) -> Iterator[dict[str, Any]]:
    from kit import gate, quantize
    from kit.config import GateConfig, QuantizeConfig

    # a budget picked by the user travels: report -> choice -> bundle -> gate -> store -> /metadata
    report = quantize.compare(bc_bundle, config=QuantizeConfig(variants=("ort-fp32",), budget=0.007, repeats=20))
    served, gate_report = gate.gate(quantize.attach(bc_bundle, quantize.select(report)),
                                    config=GateConfig(skip=("explanation_stability",)).smoke())
    assert gate_report.passed, str(gate_report)
    tag = package.save(served, "bc-bento")
    bento_tag = package.build(tag)
    with serving(None, home, bento=bento_tag, env={"KIT_API_KEY": "s3cret"}) as server:
        yield {"tag": tag, "bento": bento_tag, "server": server}


def test_built_bento_carries_model_and_dockerfile(bento: dict[str, Any]) -> None:
    import bentoml

    built = bentoml.get(bento["bento"])
    assert [str(m.tag) for m in built.info.all_models] == [bento["tag"]]
    assert (Path(built.path) / "env" / "docker" / "Dockerfile").is_file()
    assert (Path(built.path) / "src" / "kit" / "bundle.py").is_file()
    # The image installs torch's CPU wheel, not PyPI's CUDA build (the Dockerfile installs this file).
    requirements = (Path(built.path) / "env" / "python" / "requirements.txt").read_text().splitlines()
    assert requirements[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert "torch==2.13.*" in requirements
    # the service's JSON codec and uvicorn's fast parser and loop are in the image too
    assert {"orjson", "httptools", "uvloop"} <= {r.split(">")[0].split("=")[0] for r in requirements}
    assert "requirements.txt" in (Path(built.path) / "env" / "docker" / "Dockerfile").read_text()


def test_built_bento_serves_with_auth(bento: dict[str, Any], bc_result: TrainResult) -> None:
    url = bento["server"].url
    rows = bc_result.splits.test.X.head(20).to_dict("records")
    body = {"rows": rows}
    assert httpx.post(url + "/predict", json=body, timeout=60).status_code == 401
    wrong = httpx.post(url + "/predict", json=body, headers={"Authorization": "Bearer nope"}, timeout=60)
    assert wrong.status_code == 401 and wrong.json()["field"] == "authorization"
    assert httpx.get(url + "/metadata", timeout=30).status_code == 401
    assert httpx.get(url + "/metrics", timeout=30).status_code == 401
    # health probes stay open for orchestrators
    for probe in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(url + probe, timeout=30).status_code == 200
    auth = {"Authorization": "Bearer s3cret"}
    ok = httpx.post(url + "/predict", json=body, headers=auth, timeout=60)
    assert ok.status_code == 200
    assert [r["prediction"] for r in ok.json()] == bc_result.bundle.predict(rows).tolist()
    meta = httpx.get(url + "/metadata", headers=auth, timeout=30).json()
    assert meta["tag"] == bento["tag"]  # the tag baked in at build time
    assert meta["runtime"]["variant"] == "ort-fp32" and meta["store"]["source"] == "bento argument"
    # the budget chosen in Python is the one the gate checked and the one the service reports
    assert meta["configs"]["quantize"]["budget"] == meta["quantization"]["budget"] == 0.007
    runtime_check = next(c for c in meta["gate"]["checks"] if c["name"] == "runtime_drop")
    assert runtime_check["threshold"] == 0.007 and "quantized with" in runtime_check["reason"]
    # no SHAP background in this bundle: a clear 409, never a 500
    explain = httpx.post(url + "/explain", json={"rows": rows[:2]}, headers=auth, timeout=60)
    assert explain.status_code == 409 and explain.json()["field"] == "explanation"


def test_promote_and_rollback_change_the_served_version(home: Path, bc_bundle: ModelBundle) -> None:
    v1 = package.save(bc_bundle, "bc-live")
    v2 = package.save(bc_bundle.with_section("note", {"v": 2}), "bc-live")
    package.promote(v1, "first")
    package.promote(v2, "second")
    with serving(None, home) as server:  # default: the latest promoted version
        assert httpx.get(server.url + "/metadata", timeout=30).json()["tag"] == v2
    package.rollback("bc-live", "bad release")
    with serving(None, home) as server:
        assert httpx.get(server.url + "/metadata", timeout=30).json()["tag"] == v1


def test_stop_leaves_no_worker_behind(home: Path, bc_bundle: ModelBundle) -> None:
    import psutil

    tag = package.save(bc_bundle, "bc-stop")
    with serving(tag, home) as server:
        assert httpx.get(server.url + "/readyz", timeout=30).status_code == 200
        # BentoML runs its worker in a session of its own, outside the server's process group.
        family = [psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(recursive=True)]
        assert len(family) >= 2
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/readyz", timeout=2)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_kit_serve_stopped_by_a_signal_stops_the_server_and_its_workers(home: Path, bc_bundle: ModelBundle,
                                                                       tmp_path: Path, signame: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil
    from _server import free_port

    tag = package.save(bc_bundle, "bc-signal")
    port = free_port()

    def defaults() -> None:  # a CI shell may start us with SIGINT/SIGHUP ignored; a user's `kit serve` has them
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)

    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "kit.cli", "serve", tag, "--port", str(port)],
                            env={**os.environ, "KIT_API_KEY": ""}, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=defaults, start_new_session=True)
    try:
        package.wait_ready(f"http://127.0.0.1:{port}", 180, proc)  # type: ignore[arg-type]
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert len(family) >= 3  # kit serve, bentoml's server, its worker
        # what a process manager (SIGTERM) or a closed terminal (SIGHUP) sends to `kit serve` alone
        os.kill(proc.pid, getattr(signal, signame))
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                                  for p in family):
            time.sleep(0.2)
        assert [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    finally:
        if proc.poll() is None:
            package.stop(proc)  # type: ignore[arg-type]
        log.close()
