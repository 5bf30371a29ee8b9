"""What a request leaves for the release's background threads: the log's rows taken from the body, the counts."""

from __future__ import annotations

import gc
import json
import uuid
from pathlib import Path

import pytest

from kit.release import PredictionLog, predictions, store_url
from kit.release._log import _row_json
from kit.release._prom import ReleaseMetrics


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return store_url(tmp_path / "release.db")


ROW = {"mean radius": 17.99, "texture": 10.38, "kind": "a b", "n": 3, "flag": True, "none": None}


@pytest.mark.parametrize("body", [
    json.dumps({"rows": [ROW]}),                       # as clients send it
    json.dumps({"rows": [ROW]}, separators=(",", ":")),
    '\n {\t"rows" :\r\n [ ' + json.dumps(ROW, indent=2) + ' ]\n}\n',
])
def test_a_one_row_body_gives_the_row_as_sent(body: str) -> None:
    text = _row_json(body.encode())
    assert json.loads(text) == ROW and text in body.encode()  # the client's own text, not an encoding of it


@pytest.mark.parametrize("body, row", [
    (json.dumps({"rows": [ROW], "key": "user-1"}), ROW),                     # another member
    (json.dumps({"key": "user-1", "rows": [ROW]}), ROW),
    (json.dumps({"rows": [{**ROW, "kind": "a [b]"}]}), {**ROW, "kind": "a [b]"}),  # brackets in a value
    ('{"rows": [{"a": 1}], "rows": [{"b": 2}]}', {"b": 2}),                  # a repeated key: the last one
    ('{"\\u0072ows": [{"a": 1}]}', {"a": 1}),                                # an escaped key
])
def test_any_other_body_is_parsed_and_its_row_encoded(body: str, row: dict[str, object]) -> None:
    assert json.loads(_row_json(body.encode())) == row


def test_rows_are_logged_from_the_body_and_the_request_keeps_nothing_tracked(url: str) -> None:
    log = PredictionLog(url, flush_s=3600)
    one = {"rows": [ROW]}
    three = {"rows": [ROW, {**ROW, "n": 4}, {**ROW, "n": 5}], "key": "k"}
    outputs = [{"prediction": "x", "probabilities": {"x": 0.75, "y": 0.25}} for _ in range(3)]
    gc.collect()
    gc.disable()  # count the container objects the requests leave alive (the collector's trigger)
    try:
        before = gc.get_count()[0]
        for _ in range(200):  # one-row requests add only text and numbers to the queue
            log.record("m", "m:1", "champion", log.ids.take(1), one["rows"], outputs[:1], 1.0,
                       body=json.dumps(one).encode())
        grown = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert grown < 300  # a tuple and an id a request (references to rows and outputs: over 600)
    gc.collect(0)  # the first young collection untracks them: the queue keeps nothing in the collector's generations
    assert not any(gc.is_tracked(item) for item in log._queue)
    ids3 = log.ids.take(3)
    log.record("m", "m:1", "canary", ids3, three["rows"], outputs, 3.0, body=json.dumps(three).encode())
    failed = log.ids.take(1)
    log.record("m", "m:2", "canary", failed, one["rows"], None, 2.0, "error: RuntimeError: x")  # no body: encoded now
    assert log.stats()["queued"] == 202
    assert log.flush(30) and log.written == 204
    got = {r["prediction_id"]: (r["inputs"], r["output"], r["prediction"], r["latency_ms"], r["error"])
           for r in predictions(url=url)}
    assert [got[pid][0] for pid in ids3] == three["rows"]
    assert got[ids3[2]][1:4] == (outputs[2], "x", 1.0)  # each row its share of the request's time
    assert got[failed[0]] == (ROW, None, None, 2.0, "error: RuntimeError: x")
    log.close()


def test_metrics_count_what_the_requests_queued() -> None:
    from prometheus_client import REGISTRY

    name = f"m{uuid.uuid4().hex[:8]}"
    m = ReleaseMetrics(name)
    m.answered(f"{name}:1", "champion", 0.002, [{"prediction": "a", "probabilities": {"a": 1.0}}])
    m.answered(f"{name}:1", "champion", 0.004, [{"prediction": "b", "probabilities": {"b": 1.0}}] * 3)
    m.answered(f"{name}:2", "canary", 0.001, None)
    m.answered(f"{name}:2", "canary", 0.001, [{"prediction": 2.5}, {"prediction": 3.5}])  # regression values
    m.flush()

    def value(metric: str, version: str, route: str, **more: str) -> float | None:
        return REGISTRY.get_sample_value(metric, {"model": name, "version": version, "route": route, **more})

    assert value("kit_release_requests_total", "1", "champion") == 2
    assert value("kit_release_predictions_total", "1", "champion", prediction="b") == 3
    assert value("kit_release_requests_total", "2", "canary") == 2
    assert value("kit_release_errors_total", "2", "canary") == 1
    assert value("kit_release_latency_seconds_count", "1", "champion") == 2
    assert value("kit_release_prediction_value_sum", "2", "canary") == 6.0
