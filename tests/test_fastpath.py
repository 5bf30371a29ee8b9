"""kit's /predict fast path over real HTTP: a `bentoml serve` with the default settings (one worker per CPU).

The served model is breast_cancer on the dynamic-int8 runtime, whose rows depend on their batch
neighbours: under concurrent load every answer must still equal ``bundle.infer`` of that request's rows.
A second server runs with ``KIT_FAST_PATH=0`` (BentoML's own handler and batcher) and must agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _server import Server, serving, use_bentoml_home

from kit import package
from kit.bundle import ModelBundle
from kit.serving import cpu_count
from kit.train import TrainResult

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def model(bc_result: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from kit.quantize import attach

    home = tmp_path_factory.mktemp("bentoml_home_fast")
    use_bentoml_home(home)
    bundle = attach(bc_result.bundle, "ort-int8-dynamic")
    return {"home": home, "tag": package.save(bundle, "fast"), "bundle": bundle,
            "rows": bc_result.splits.test.X.to_dict("records")}


@pytest.fixture(scope="module")
def server(model: dict[str, Any]) -> Iterator[Server]:
    with serving(model["tag"], model["home"], env={"KIT_MAX_BODY_BYTES": "20000"}) as srv:
        yield srv


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


async def _hammer(url: str, requests: list[list[dict[str, Any]]], concurrency: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def one(rows: list[dict[str, Any]]) -> httpx.Response:
            async with gate:
                return await client.post("/predict", json={"rows": rows})

        return await asyncio.gather(*(one(r) for r in requests))


def test_concurrent_answers_equal_infer_of_each_request(server: Server, model: dict[str, Any]) -> None:
    bundle: ModelBundle = model["bundle"]
    rows = model["rows"]
    requests = [rows[i:i + 1 + i % 4] for i in range(len(rows) - 4)] * 3
    before = httpx.get(server.url + "/metrics", timeout=30).text
    responses = asyncio.run(_hammer(server.url, requests, 48))
    ids = set()
    for request, response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        answer = response.json()
        ids.update(record.pop("prediction_id") for record in answer)  # the release numbers every prediction
        # exactly what the notebook gets for these rows, whichever requests shared the model call
        assert answer == bundle.infer(request).records()
    assert len(ids) == sum(len(r) for r in requests)
    after = httpx.get(server.url + "/metrics", timeout=30).text
    calls = _metric(after, "kit_predict_batch_rows_count") - _metric(before, "kit_predict_batch_rows_count")
    merged = _metric(after, "kit_predict_batch_rows_sum") - _metric(before, "kit_predict_batch_rows_sum")
    assert merged == sum(len(r) for r in requests)
    assert calls < len(requests)  # concurrent requests were merged into fewer model calls
    assert _metric(after, 'kit_predict_requests_total{status="200"}') >= len(requests)


def test_metadata_says_how_predict_is_served(server: Server) -> None:
    serving_info = httpx.get(server.url + "/metadata", timeout=30).json()["serving"]
    assert serving_info["predict"] == "kit's fast path, in front of BentoML's middleware"
    assert serving_info["workers"] == cpu_count() and serving_info["json"] == "orjson"
    assert serving_info["batch_invariant"] is False


def test_wrong_method_and_large_body_get_json_errors_that_say_what_to_do(server: Server, model) -> None:
    response = httpx.get(server.url + "/predict", timeout=30)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["field"] == "method" and "POST /predict" in response.json()["message"]
    response = httpx.post(server.url + "/predict", json={"rows": model["rows"] * 3}, timeout=30)
    assert response.status_code == 413
    message = response.json()["message"]
    assert "/predict_file" in message and "KIT_MAX_BODY_BYTES" in message
    response = httpx.post(server.url + "/predict", content=b'{"rows": [{"x": NaN}]}', timeout=30)
    assert response.status_code == 422  # a malformed row after the lenient parse: named, not a 400 or a 500
    assert response.json()["row"] == 0
    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    assert _metric(metrics, 'kit_predict_requests_total{status="413"}') >= 1


def test_bentoml_path_gives_the_same_answers(model: dict[str, Any], tmp_path) -> None:
    bundle: ModelBundle = model["bundle"]
    rows = model["rows"]
    with serving(model["tag"], tmp_path, env={"KIT_FAST_PATH": "0", "KIT_WORKERS": "1"}) as stock:
        meta = httpx.get(stock.url + "/metadata", timeout=30).json()
        assert meta["serving"]["predict"].startswith("BentoML's handler")
        for start in range(0, 30, 10):  # one request at a time: BentoML's batcher merges nothing
            response = httpx.post(stock.url + "/predict", json={"rows": rows[start:start + 10]}, timeout=60)
            assert response.status_code == 200, response.text
            assert response.json() == bundle.infer(rows[start:start + 10]).records()
        response = httpx.post(stock.url + "/predict", json={"rows": [{**rows[0], "mean radius": "big"}]}, timeout=60)
        assert response.status_code == 422 and response.json()["field"] == "mean radius"
