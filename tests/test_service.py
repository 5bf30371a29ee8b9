"""The BentoML service over real HTTP: one `bentoml serve` from bentos/ for the whole module.

The served model is the mixed CSV model (numeric + categorical + missing values) with a SHAP
background attached, so predictions, validation of every kind, /explain and /drift are all real.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from _server import Server, serving, use_bentoml_home

from kit import package
from kit.bundle import ModelBundle
from kit.serving import ServedModel
from kit.train import TrainResult

pytestmark = [pytest.mark.server, pytest.mark.slow]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: NaN/None become null."""
    return [{k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in r.items()}
            for r in frame.astype(object).to_dict("records")]


@pytest.fixture(scope="module")
def served(mixed_result: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from kit import explain

    home = tmp_path_factory.mktemp("bentoml_home")
    use_bentoml_home(home)
    bundle = mixed_result.bundle
    train_x = mixed_result.splits.train.X
    bundle = explain.attach(bundle, explain.explain(bundle, train_x.head(20), background=train_x, background_size=30))
    tag = package.save(bundle, "mixed")
    package.promote(tag, "test service")
    # one worker: the drift test counts an exact window; test_drift_covers_every_worker and the reliability
    # suite run several workers (the default is one per CPU)
    env = {"KIT_MAX_ROWS": "100", "KIT_MAX_BODY_BYTES": "200000", "KIT_DRIFT_WINDOW": "150",
           "KIT_MAX_EXPLAIN_ROWS": "5", "KIT_WORKERS": "1"}
    with serving(None, home, env=env) as server:  # None: the latest promoted version
        yield {"server": server, "bundle": bundle, "tag": tag, "result": mixed_result}


def post(server: Server, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60, **kwargs)


def test_predictions_equal_in_process_for_the_whole_test_split(served: dict[str, Any]) -> None:
    import bentoml

    bundle: ModelBundle = served["bundle"]
    test_x = served["result"].splits.test.X
    expected = bundle.infer(test_x)
    rows = records(test_x)
    got: list[dict[str, Any]] = []
    for start in range(0, len(rows), 40):  # plain HTTP client, in requests under the row limit
        response = post(served["server"], "/predict", {"rows": rows[start:start + 40]})
        assert response.status_code == 200, response.text
        got.extend(response.json())
    assert [g["prediction"] for g in got] == expected.labels
    proba = np.array([[g["probabilities"][str(k)] for k in bundle.label_names or []] for g in got])
    np.testing.assert_allclose(proba, expected.probabilities, rtol=0, atol=1e-6)

    # BentoML's own client reaches the same endpoint with the same answers
    with bentoml.SyncHTTPClient(served["server"].url, timeout=60) as client:
        out = client.predict(rows=rows[:25])
    assert [o["prediction"] for o in out] == expected.labels[:25]


def test_predict_file_scores_a_csv_upload(served: dict[str, Any]) -> None:
    bundle: ModelBundle = served["bundle"]
    test_x = served["result"].splits.test.X
    data = test_x.to_csv(index=False).encode()
    response = httpx.post(served["server"].url + "/predict_file", files={"file": ("in.csv", data, "text/csv")},
                          timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    scored = pd.read_csv(io.BytesIO(response.content))
    expected = bundle.infer(test_x).to_frame()
    assert scored["prediction"].tolist() == expected["prediction"].tolist()
    np.testing.assert_allclose(scored.filter(like="proba_").to_numpy(), expected.filter(like="proba_").to_numpy(),
                               atol=1e-9)

    # a CSV with an unknown column is a 422 naming the column, not a 500
    bad = test_x.assign(extra=1).to_csv(index=False).encode()
    response = httpx.post(served["server"].url + "/predict_file", files={"file": ("in.csv", bad, "text/csv")},
                          timeout=60)
    assert response.status_code == 422
    assert response.json()["field"] == "extra"


def _row(served: dict[str, Any], **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict(served["bundle"].example(1)[0])
    row.update(changes)
    return row


BAD_CASES: list[tuple[str, Any, int, str | None, int | None]] = [
    # (name, body or raw bytes, status, field named, row named)
    ("missing field", lambda r: {"rows": [r, {k: v for k, v in r.items() if k != "size"}]}, 422, "size", 1),
    ("unknown field", lambda r: {"rows": [{**r, "height": 3}]}, 422, "height", 0),
    ("text in numeric", lambda r: {"rows": [r, r, {**r, "weight": "heavy"}]}, 422, "weight", 2),
    ("number as text", lambda r: {"rows": [{**r, "size": "12.5"}]}, 422, "size", 0),
    ("boolean in numeric", lambda r: {"rows": [{**r, "size": True}]}, 422, "size", 0),
    ("object in categorical", lambda r: {"rows": [{**r, "color": {"r": 1}}]}, 422, "color", 0),
    ("unseen category", lambda r: {"rows": [r, {**r, "color": "purple"}]}, 422, "color", 1),
    ("NaN literal", lambda r: json.dumps({"rows": [{**r, "size": float("nan")}]}).encode(), 422, "size", 0),
    ("Infinity literal", lambda r: json.dumps({"rows": [{**r, "weight": float("-inf")}]}).encode(), 422,
     "weight", 0),
    ("overflowing number", lambda r: json.dumps({"rows": [{**r, "size": "BIG"}]}).replace('"BIG"', "1e999")
     .encode(), 422, "size", 0),
    ("too many rows", lambda r: {"rows": [r] * 101}, 422, "rows", None),
    ("rows not a list", lambda r: {"rows": r}, 422, "rows", None),
    ("row not an object", lambda r: {"rows": [r, [1, 2]]}, 422, None, 1),
    ("no rows key", lambda r: {"data": [r]}, 400, "rows", None),
    ("malformed JSON", lambda r: b'{"rows": [{"size": 1,', 400, "body", None),
    ("oversized body", lambda r: {"rows": [{**r, "color": "x" * 300_000}]}, 413, "body", None),
]


@pytest.mark.parametrize(("name", "make", "status", "field", "row"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_gets_a_4xx_naming_field_and_row(served: dict[str, Any], name: str, make: Any, status: int,
                                                  field: str | None, row: int | None) -> None:
    body = make(_row(served))
    url = served["server"].url + "/predict"
    if isinstance(body, bytes):
        response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60)
    else:
        response = httpx.post(url, json=body, timeout=60)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["message"]
    if field is not None:
        assert payload["field"] == field
    if row is not None:
        assert payload["row"] == row


def test_server_survives_bad_input_and_explains_errors(served: dict[str, Any]) -> None:
    url = served["server"].url
    response = httpx.post(url + "/predict", json={"rows": [_row(served, color=None, weight=None)]}, timeout=60)
    # null means missing: imputed, not refused
    assert response.status_code == 200, response.text
    response = httpx.post(url + "/predict", content=b"\xff\xfe garbage", timeout=60)
    assert response.status_code == 400
    # a deeply nested document under the size limit is refused, not a RecursionError 500
    response = httpx.post(url + "/predict", content=b"[" * 50_000 + b"]" * 50_000, timeout=60)
    assert response.status_code == 400
    assert httpx.get(url + "/readyz", timeout=10).status_code == 200


def test_metadata_describes_the_served_model(served: dict[str, Any]) -> None:
    meta = httpx.get(served["server"].url + "/metadata", timeout=30).json()
    assert meta["tag"] == served["tag"]
    features = {f["name"]: f for f in meta["schema"]["features"]}
    assert features["color"]["categories"] == ["blue", "green", "red"]
    assert features["size"]["type"] == "number"
    assert meta["runtime"]["variant"] == "fp32"
    assert meta["lineage"]["data_hash"] == served["bundle"].lineage["data_hash"]
    assert meta["metrics"]["test"] == pytest.approx(served["bundle"].metrics["test"])


def test_explain_returns_shap_values_from_the_stored_background(served: dict[str, Any]) -> None:
    rows = records(served["result"].splits.test.X.head(3))
    response = post(served["server"], "/explain", {"rows": rows})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["feature_names"] == served["bundle"].feature_names
    for r in out["rows"]:
        # SHAP additivity: the values and the base value add up to the explained output
        assert sum(r["shap"].values()) + r["base_value"] == pytest.approx(r["output"], abs=1e-3)
    # explain has its own, smaller row limit
    response = post(served["server"], "/explain", {"rows": rows * 2})
    assert response.status_code == 422 and response.json()["field"] == "rows"


def test_explain_without_background_is_a_409_not_a_500(mixed_result: TrainResult) -> None:
    from kit.serving import NotAvailableError

    model = ServedModel(mixed_result.bundle, "mixed:plain")
    with pytest.raises(NotAvailableError) as info:
        model.explain(mixed_result.bundle.example(1))
    assert info.value.status_code == 409


def test_drift_rises_for_a_shifted_input_stream(served: dict[str, Any]) -> None:
    server: Server = served["server"]
    train_x = served["result"].splits.train.X
    in_dist = records(train_x.sample(150, random_state=1, replace=True))
    for start in range(0, 150, 50):
        assert post(server, "/predict", {"rows": in_dist[start:start + 50]}).status_code == 200
    calm = httpx.get(server.url + "/drift", timeout=30).json()
    assert calm["window"] == 150 and calm["ready"]
    assert calm["psi"]["size"] < 0.25

    shifted = [{**r, "size": (r["size"] or 10.0) + 12.0} for r in in_dist]  # +4 standard deviations
    for start in range(0, 150, 50):
        assert post(server, "/predict", {"rows": shifted[start:start + 50]}).status_code == 200
    drifted = httpx.get(server.url + "/drift", timeout=30).json()
    assert drifted["psi"]["size"] > 1.0
    assert "size" in drifted["drifted"]
    # the same figure is exported as a Prometheus gauge
    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    line = next(x for x in metrics.splitlines() if x.startswith('kit_drift_psi{feature="size"}'))
    assert float(line.split()[-1]) > 1.0


def test_check_rows_follows_the_ignore_policy(mixed_result: TrainResult) -> None:
    from kit.serving import check_rows

    bundle = mixed_result.bundle.copy()
    bundle.preprocessor.unknown_category = "ignore"
    row = {**bundle.example(1)[0], "color": "purple"}
    # with unknown_category="ignore" an unseen category is encoded as all zeros, not refused
    assert check_rows(bundle, {"rows": [row]}, 10) == [row]


def test_shared_windows_merge_live_workers_and_drop_dead_ones(tmp_path) -> None:
    import subprocess
    import sys

    from kit.serving import SharedWindows

    me = SharedWindows(tmp_path / "drift")
    assert (tmp_path / "drift").stat().st_mode & 0o777 == 0o700
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        peer = SharedWindows(tmp_path / "drift")
        peer.pid = other.pid  # stands in for another worker process of the same server
        peer.write([{"size": 1.0, "color": "red"}, {"size": np.float64(2.5), "color": None}], seen=7)
        me.write([{"size": 9.0, "color": "blue"}], seen=1)
        gone = SharedWindows(tmp_path / "drift")
        gone.pid = 2**22 + 12345  # no such process
        gone.write([{"size": 5.0, "color": "red"}], seen=3)
        # this worker reads the others' windows, never its own, and skips (and removes) a dead worker's file
        assert me.read_others() == [([{"size": 1.0, "color": "red"}, {"size": 2.5, "color": None}], 7)]
        assert not (tmp_path / "drift" / f"{gone.pid}.json").exists()
    finally:
        other.kill()
        other.wait()


def test_drift_covers_every_worker(served: dict[str, Any], tmp_path) -> None:
    home = tmp_path / "logs"
    home.mkdir()
    rows = records(served["result"].splits.train.X.sample(200, random_state=2, replace=True))
    env = {"KIT_WORKERS": "2", "KIT_DRIFT_WINDOW": "500", "KIT_BATCHING": "0", "KIT_DRIFT_DIR": str(tmp_path / "d")}
    with serving(served["tag"], home, env=env) as two:
        for start in range(0, 200, 10):  # a new connection per request: the kernel spreads them over the workers
            assert post(two, "/predict", {"rows": rows[start:start + 10]}).status_code == 200
        time.sleep(2.5)  # workers share their windows every second
        answers = [httpx.get(two.url + "/drift", timeout=30).json() for _ in range(8)]
        shared = sorted(p.name for p in (tmp_path / "d").glob("*.json"))
    assert len(shared) == 2  # both workers took requests and shared their windows
    # whichever worker answers, the window holds every worker's rows
    assert all(a["window"] == 200 and a["seen"] == 200 and a["workers"] == 2 for a in answers), answers


def test_shared_windows_default_to_one_private_folder_per_server() -> None:
    import os
    import tempfile

    from kit.serving import Settings, SharedWindows

    assert SharedWindows.for_settings(Settings(workers=1)) is None  # one worker: nothing to share
    shared = SharedWindows.for_settings(Settings(workers=2))
    assert shared is not None
    assert shared.directory.parent == Path(tempfile.gettempdir())
    assert shared.directory.name == f"kit-drift-{os.getuid()}-{os.getppid()}"  # the workers' common parent
