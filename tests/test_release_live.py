"""Prediction log, feedback, live metrics with intervals, the confidence-based estimate, drift tests and decisions."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kit import drift, metrics
from kit.bundle import ModelBundle
from kit.errors import KitError, SchemaError
from kit.release import (
    PredictionLog,
    Thresholds,
    auto_rollback,
    drift_tests,
    history,
    parse_csv,
    parse_items,
    performance,
    predictions,
    read,
    record,
    status,
    store_url,
)
from kit.release._live import estimated_metrics
from kit.release._state import change, promote_change
from kit.release._stats import benjamini_hochberg, delong, holm, wilson


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return store_url(tmp_path / "release.db")


def _name() -> str:
    return f"m{uuid.uuid4().hex[:10]}"


def _log_rows(url: str, name: str, tag: str, route: str, rows: list[dict[str, Any]], outputs: list[dict[str, Any]],
              ids: list[str] | None = None, error: str | None = None, **kw: Any) -> list[str]:
    log = PredictionLog(url, **kw)
    ids = ids or log.ids.take(len(rows))
    for i in range(len(rows)):
        log.record(name, tag, route, ids[i:i + 1], rows[i:i + 1], None if error else outputs[i:i + 1], 1.0 + i % 7,
                   error)
    assert log.flush(30)
    log.close()
    return ids


def _count(url: str, table: str = "predictions") -> int:
    if table == "predictions":
        return len(predictions(url=url))
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return int(conn.execute(f"select count(*) from {table}").fetchone()[0])


# -- the prediction log --------------------------------------------------------------------------
def test_the_log_writes_every_prediction_in_the_background(url: str, bc_bundle: ModelBundle) -> None:
    rows = bc_bundle.example(50)
    outputs = bc_bundle.infer(rows).records()
    ids = _log_rows(url, "bc", "bc:1", "champion", rows, outputs)
    assert len(set(ids)) == 50 and _count(url) == 50
    first = predictions(url=url)[-1]  # newest first
    assert (first["prediction_id"], first["route"], first["tag"]) == (ids[0], "champion", "bc:1")
    assert first["inputs"] == rows[0] and first["output"] == outputs[0]


def test_a_full_queue_drops_and_counts_and_never_blocks(url: str) -> None:
    dropped: list[int] = []
    log = PredictionLog(url, queue_size=20, flush_s=0.05, on_drop=lambda n, why: dropped.append(n))
    path = url.removeprefix("sqlite:///")
    locker = sqlite3.connect(path, timeout=30)
    locker.execute("BEGIN EXCLUSIVE")  # the database is busy: the writer waits on it
    try:
        log.record("m", "m:1", "champion", log.ids.take(1), [{"x": 1}], [{"prediction": 1.0}], 1.0)
        time.sleep(0.3)  # the writer took that request and is now blocked on the lock
        slowest = 0.0
        for _ in range(100):
            t0 = time.perf_counter()
            log.record("m", "m:1", "champion", log.ids.take(1), [{"x": 1}], [{"prediction": 1.0}], 1.0)
            slowest = max(slowest, time.perf_counter() - t0)
        assert slowest < 0.05  # a request never waits for the database
        assert log.dropped == 80 and sum(dropped) == 80  # 20 queued, the rest dropped and counted
    finally:
        locker.rollback()
        locker.close()
    assert log.flush(30)
    assert _count(url) == 21 and log.stats()["written"] == 21
    log.close()


def test_retention_by_age_and_by_rows(url: str) -> None:
    log = PredictionLog(url, retention_days=1, max_rows=30)
    log.record("m", "m:1", "champion", log.ids.take(40), [{"x": 1}] * 40, [{"prediction": 1.0}] * 40, 1.0)
    assert log.flush(30)
    assert _count(url) == 40
    assert log.prune() == 10 and _count(url) == 30  # the oldest rows beyond the bound go
    assert log.prune(now=time.time() + 2 * 86400) == 30 and _count(url) == 0  # older than a day
    log.close()


# -- feedback ------------------------------------------------------------------------------------
def test_feedback_items_are_checked_naming_row_and_field() -> None:
    classes = ["malignant", "benign"]
    twice = [{"prediction_id": "a", "label": "benign"}, {"prediction_id": "a", "label": "malignant"}]
    ok = parse_items({"items": twice}, classes)
    assert ok == {"a": '"malignant"'}  # the last label for an id wins
    cases = [({"items": [{"prediction_id": "a", "label": "cat"}]}, "label", 0),
             ({"items": [{"prediction_id": "a", "label": "benign"}, {"label": "benign"}]}, "prediction_id", 1),
             ({"items": [{"prediction_id": 7, "label": "benign"}]}, "prediction_id", 0),
             ({"items": [{"prediction_id": "a", "label": "benign", "x": 1}]}, "x", 0)]
    for body, field, row in cases:
        with pytest.raises(SchemaError) as info:
            parse_items(body, classes)
        assert (info.value.field, info.value.row) == (field, row)
    with pytest.raises(KitError, match="items"):
        parse_items({"rows": []}, classes)
    with pytest.raises(SchemaError, match="finite number"):
        parse_items({"items": [{"prediction_id": "a", "label": "high"}]}, None)
    assert parse_items({"items": [{"prediction_id": "a", "label": 151}]}, None) == {"a": "151.0"}
    assert parse_csv(b"prediction_id,label\na,benign\nb,malignant\n", classes) == {"a": '"benign"', "b": '"malignant"'}
    with pytest.raises(SchemaError, match="missing 'label'"):
        parse_csv(b"prediction_id,y\na,1\n", classes)


# -- live metrics ----------------------------------------------------------------------------------
def test_performance_equals_offline_metrics_on_the_same_rows(url: str, bc_result: Any) -> None:
    bundle, test = bc_result.bundle, bc_result.splits.test
    rows = test.X.to_dict("records")
    outputs = bundle.infer(rows).records()
    ids = _log_rows(url, "bc", "bc:1", "champion", rows, outputs)
    labelled = list(range(0, len(rows), 2))  # labels arrive for half of the predictions
    y = test.y  # class indices; feedback sends the label names
    got = record({ids[i]: json.dumps(str(bundle.label_names[y[i]])) for i in labelled}, url)
    assert got == {"accepted": len(labelled), "matched": len(labelled), "unmatched": 0}
    report = performance("bc", url, window_s=3600)
    v = report["versions"][0]
    assert v["tag"] == "bc:1" and v["predictions"] == len(rows) and v["labelled"] == len(labelled)
    offline = metrics.classification(y[labelled], bundle.predict_proba(test.X.iloc[labelled]))
    for key in ("accuracy", "f1", "roc_auc", "log_loss"):
        m = v["metrics"][key]
        assert m["value"] == pytest.approx(offline[key], abs=1e-9), key
        assert m["low"] <= m["value"] <= m["high"] and m["method"] and m["n"] == len(labelled)
    est = v["estimated"]
    assert est["rows"] == len(rows) - len(labelled) and "CBPE" in est["method"]
    assert 0 <= est["metrics"]["accuracy"]["low"] <= est["metrics"]["accuracy"]["high"] <= 1
    assert est["ece_on_labelled"] >= 0


def test_regression_metrics_equal_offline(url: str, diabetes_result: Any) -> None:
    bundle, test = diabetes_result.bundle, diabetes_result.splits.test
    rows = test.X.to_dict("records")
    ids = _log_rows(url, "db", "db:1", "champion", rows, bundle.infer(rows).records())
    record(parse_items({"items": [{"prediction_id": i, "label": float(v)} for i, v in zip(ids, test.y, strict=True)]},
                       None), url)
    v = performance("db", url, window_s=3600)["versions"][0]
    offline = metrics.regression(test.y.astype(float), bundle.predict(test.X))
    for key in ("rmse", "mae", "r2"):
        assert v["metrics"][key]["value"] == pytest.approx(offline[key], rel=1e-9), key
        assert v["metrics"][key]["low"] <= offline[key] <= v["metrics"][key]["high"]
    assert v["estimated"]["metrics"] == {} and "regression" in v["estimated"]["note"]


def test_intervals() -> None:
    lo, hi = wilson(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)  # the textbook Wilson interval for 8/10
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    score = y * 0.8 + rng.normal(0, 1, 400)
    auc, a_lo, a_hi = delong(y, score)
    assert auc == pytest.approx(roc_auc_score(y, score)) and a_lo < auc < a_hi and a_hi - a_lo < 0.15
    # Holm and Benjamini-Hochberg on a textbook set of p-values
    p = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005}
    assert holm(p) == pytest.approx({"d": 0.02, "a": 0.03, "c": 0.06, "b": 0.06})
    assert benjamini_hochberg(p) == pytest.approx({"d": 0.02, "a": 0.02, "c": 0.04, "b": 0.04})


def test_the_confidence_based_estimate_covers_the_realized_accuracy_when_calibrated() -> None:
    rng = np.random.default_rng(3)
    p1 = rng.beta(2, 2, 3000)
    proba = np.column_stack([1 - p1, p1])
    y = (rng.random(3000) < p1).astype(int)  # labels drawn from the probabilities: calibrated
    est = estimated_metrics(proba)
    real = metrics.classification(y, proba)
    for key in ("accuracy", "f1", "roc_auc"):
        assert est[key]["low"] <= real[key] <= est[key]["high"], (key, est[key], real[key])
    assert est["accuracy"]["value"] == pytest.approx(proba.max(axis=1).mean())


# -- drift tests ---------------------------------------------------------------------------------
def test_ks_and_chi2_against_the_reference() -> None:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(0, 1, 4000), "k": rng.integers(0, 6, 4000).astype(float),
                          "c": rng.choice(["x", "y", "z"], 4000, p=[0.5, 0.3, 0.2])})
    ref = drift.reference(train, {"a": "numeric", "k": "numeric", "c": "categorical"})
    same = pd.DataFrame({"a": rng.normal(0, 1, 500), "k": rng.integers(0, 6, 500).astype(float),
                         "c": rng.choice(["x", "y", "z"], 500, p=[0.5, 0.3, 0.2])})
    shifted = pd.DataFrame({"a": rng.normal(0.4, 1, 500), "k": rng.integers(1, 7, 500).astype(float),
                            "c": rng.choice(["x", "y", "new"], 500, p=[0.5, 0.3, 0.2])})
    for live in (same, shifted):
        out = drift_tests(ref, live)
        for col in ("a", "k"):  # within 0.01 of the two-sample KS statistic on the training rows
            assert out["features"][col]["statistic"] == pytest.approx(ks_2samp(live[col], train[col]).statistic,
                                                                      abs=0.01)
    assert drift_tests(ref, same)["drifted"] == []
    out = drift_tests(ref, shifted)
    assert out["drifted"] == ["a", "c", "k"] and out["correction"] == "holm" and out["ready"]
    assert out["features"]["c"]["test"] == "chi2" and out["features"]["a"]["test"] == "ks"
    # below the minimum sample size nothing is flagged, but the statistics are there
    small = drift_tests(ref, shifted.head(50))
    assert not small["ready"] and small["drifted"] == [] and small["features"]["a"]["statistic"] > 0


# -- decisions -----------------------------------------------------------------------------------
def _trial(url: str, bundle: ModelBundle, test: Any, n: int, *, challenger_errors: float = 0.0,
           shadow: bool = True, labels: bool = True) -> str:
    name = _name()
    change(name, promote_change(f"{name}:1", "ship"), url)
    change(name, promote_change(f"{name}:2", "try", shadow=shadow, canary=None if shadow else 50), url)
    rows = (test.X.to_dict("records") * (n // len(test.X) + 1))[:n]
    ys = ([bundle.label_names[i] for i in test.y] * (n // len(test.X) + 1))[:n]
    outputs = bundle.infer(rows).records()
    ids = _log_rows(url, name, f"{name}:1", "champion", rows, outputs)
    failing = int(n * challenger_errors)
    _log_rows(url, name, f"{name}:2", "shadow" if shadow else "canary", rows[failing:], outputs[failing:],
              ids=ids[failing:] if shadow else None)
    if failing:
        _log_rows(url, name, f"{name}:2", "shadow", rows[:failing], [], error="RuntimeError: boom")
    if labels:
        record({i: json.dumps(str(y)) for i, y in zip(ids, ys, strict=True)}, url)
    return name


def test_a_failing_challenger_is_rolled_back_automatically_with_the_reason(url: str, bc_result: Any) -> None:
    name = _trial(url, bc_result.bundle, bc_result.splits.test, 300, challenger_errors=0.2, labels=False)
    verdict = status(name, url, window_s=3600)["recommendation"]
    assert verdict["action"] == "roll back" and "20.0% of 300" in verdict["reasons"][0]
    assert any(t["test"] == "two-proportion z-test" for t in verdict["tests"])
    entry = auto_rollback(name, url)
    assert entry is not None and entry["auto"] is True and "automatic" in entry["reason"]
    assert read(name, url).challenger is None and history(name, url)[-1]["reason"] == entry["reason"]
    assert auto_rollback(name, url) is None  # nothing on trial any more


def test_an_equal_challenger_is_recommended_for_promotion(url: str, bc_result: Any) -> None:
    name = _trial(url, bc_result.bundle, bc_result.splits.test, 600)
    report = status(name, url, window_s=3600, thresholds=Thresholds(margin=0.02))
    verdict = report["recommendation"]
    assert verdict["action"] == "promote", verdict
    assert [t["test"] for t in verdict["tests"]][-2:] == ["McNemar exact test (paired)", "one-sided z-test"]
    assert report["agreement"]["paired"]["value"] == 1.0 and report["agreement"]["paired"]["pairs"] == 600
    roles = {v["role"]: v for v in report["versions"]}
    assert roles["champion"]["labelled"] == roles["challenger"]["labelled"] == 600


def test_too_few_labels_keep_the_trial(url: str, bc_result: Any) -> None:
    name = _trial(url, bc_result.bundle, bc_result.splits.test, 60, shadow=False)
    verdict = status(name, url, window_s=3600)["recommendation"]
    assert verdict["action"] == "keep" and "needed" in verdict["reasons"][0]


def test_record_during_concurrent_writes(url: str) -> None:
    log = PredictionLog(url, flush_s=0.01)
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            record({f"f{uuid.uuid4().hex[:8]}": '"x"'}, url)

    t = threading.Thread(target=feed)
    t.start()
    try:
        for _ in range(200):
            log.record("m", "m:1", "champion", log.ids.take(2), [{"x": 1}] * 2, [{"prediction": 1.0}] * 2, 1.0)
        assert log.flush(30)
    finally:
        stop.set()
        t.join()
    assert log.written == 400 and log.failed == 0 and log.dropped == 0
    log.close()


def test_counts_cover_the_window_while_decoded_rows_are_bounded(url: str, bc_bundle: ModelBundle) -> None:
    from kit.release import load

    rows = bc_bundle.example(60)
    outputs = bc_bundle.infer(rows).records()
    _log_rows(url, "bc", "bc:1", "champion", rows[:50], outputs[:50])
    _log_rows(url, "bc", "bc:1", "champion", rows[50:], outputs[50:], error="RuntimeError: x")
    window = load("bc", url, window_s=3600, recent=10)
    v = window.versions["bc:1"]
    assert v.predictions == 60 and v.errors == 10 and len(v.recent.ids) == 10  # exact counts, bounded rows
    report = performance("bc", url, window_s=3600)["versions"][0]
    assert report["predictions"] == 60 and report["error_rate"]["value"] == pytest.approx(10 / 60)


def test_the_live_metrics_process_loads_no_heavy_library(tmp_path: Path) -> None:
    """The child a server runs for the report (kit.release._monitor) stays small: no pandas, torch, optuna, BentoML."""
    import os
    import subprocess
    import sys

    code = ("import json, sys\n"
            "from kit.release._monitor import compute\n"
            "from kit.release._decision import Thresholds\n"
            "out = compute('m', None, window_s=3600, thresholds=Thresholds(), auto_rollback=True, by='t')\n"
            "heavy = ('pandas', 'torch', 'optuna', 'bentoml', 'onnxruntime', 'sklearn', 'pyarrow')\n"
            "print(json.dumps({'error': out['error'], 'report': out['report'] is not None,\n"
            "                  'loaded': sorted(m for m in heavy if m in sys.modules)}))\n")
    env = {**os.environ, "BENTOML_HOME": str(tmp_path)}
    env.pop("KIT_LOG_URL", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"error": None, "report": True, "loaded": []}
