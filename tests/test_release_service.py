"""Safe releases on a real `bentoml serve`: canary split and stickiness, promotions and rollbacks picked up
without a restart by every worker, shadow that never changes the answer (and survives a challenger that
raises or hangs), automatic rollback, feedback -> /performance, the log store on PostgreSQL, /metrics auth."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from _server import Server, serving, use_bentoml_home

from kit import metrics, package
from kit.train import TrainResult

pytestmark = [pytest.mark.server, pytest.mark.slow]

POLL = "0.3"
BOUND_S = 0.3 + 10.0  # the poll interval plus a generous load time on a busy shared machine
FAULTS = str(Path(__file__).parent / "faults")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bentoml_home")
    use_bentoml_home(path)
    return path


@pytest.fixture(scope="module")
def versions(home: Path, bc_result: TrainResult, wine_result: TrainResult) -> dict[str, str]:
    """bc:v1 (champion), bc:v2 (the same model, another version), and a 'broken' version whose schema
    is another dataset's, so it raises on every request it gets."""
    bundle = bc_result.bundle
    v1 = package.save(bundle, "bc-svc")
    v2 = package.save(bundle.with_section("note", {"v": 2}), "bc-svc")
    broken = package.save(wine_result.bundle, "bc-svc")
    package.promote(v1, "first")
    return {"v1": v1, "v2": v2, "broken": broken}


def post(client: httpx.Client, rows: list[dict[str, Any]], key: str | None = None, *, field: bool = False
         ) -> tuple[int, Any, str]:
    body: dict[str, Any] = {"rows": rows}
    headers = {}
    if key is not None and field:
        body["key"] = key
    elif key is not None:
        headers["X-Request-Key"] = key
    r = client.post("/predict", json=body, headers=headers)
    return r.status_code, r.json(), r.headers.get("x-kit-model", "")


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def serving_model(client: httpx.Client, rows: list[dict[str, Any]]) -> str:
    return post(client, rows[:1])[2]


@pytest.fixture(scope="module")
def server(home: Path, versions: dict[str, str]) -> Iterator[Server]:
    env = {"KIT_RELEASE_POLL_S": POLL, "KIT_WORKERS": "2", "KIT_AUTO_ROLLBACK_S": "0.5"}
    with serving(None, home, env=env) as s:  # by name: follows the promotions of bc-svc
        yield s


def test_canary_split_stickiness_ids_and_pickup_without_restart(server: Server, versions: dict[str, str],
                                                                 bc_result: TrainResult) -> None:
    rows = bc_result.splits.test.X.head(3).to_dict("records")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        status, out, model = post(client, rows)
        assert status == 200 and model == versions["v1"]
        assert [set(r) for r in out] == [{"prediction", "probabilities", "prediction_id"}] * 3
        assert len({r["prediction_id"] for r in out}) == 3
        for path in ("/metadata", "/readyz", "/drift", "/release"):  # every response says who answers
            assert client.get(path).headers["x-kit-model"] == versions["v1"], path
        start = time.monotonic()
        package.promote(versions["v2"], "try it", canary=25)
        took = wait_for(lambda: client.get("/release").json()["serving"]["percent"] == 25, BOUND_S, "canary seen")
        assert time.monotonic() - start < BOUND_S, took
        # every worker follows within the bound: requests spread over both agree on the revision
        revision = client.get("/release").json()["state"]["revision"]
        time.sleep(float(POLL) * 3)
        seen: dict[int, set[int]] = {}
        for _ in range(60):
            with httpx.Client(base_url=server.url, timeout=60) as fresh:  # a new connection: any worker
                info = fresh.get("/release").json()
                seen.setdefault(info["worker"], set()).add(info["serving"]["revision"])
        assert len(seen) == 2 and all(revs == {revision} for revs in seen.values()), seen
        keys = [f"user-{i}" for i in range(2000)]
        first = {k: post(client, rows[:1], k)[2] for k in keys}
        share = 100.0 * sum(m == versions["v2"] for m in first.values()) / len(keys)
        assert abs(share - 25) <= 3, share  # within 3 points of the requested share over 2,000 keyed requests
        # sticky: the same key reaches the same version, by header or by the body's key field
        again = {k: post(client, rows[:1], k, field=i % 2 == 0)[2] for i, k in enumerate(keys[:500])}
        assert all(again[k] == first[k] for k in again)
        # without a key: random, at about the share
        unkeyed = [post(client, rows[:1])[2] for _ in range(400)]
        assert 0.12 < sum(m == versions["v2"] for m in unkeyed) / 400 < 0.38


def test_the_log_holds_each_answer_and_row_as_served(server: Server, bc_result: TrainResult) -> None:
    """A one-row request's output is logged from the answer's JSON, its row from the body: both as served."""
    import kit.release

    rows = bc_result.splits.test.X.iloc[10:14].to_dict("records")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        sent = [([rows[0]], post(client, [rows[0]])[1]), (rows[1:], post(client, rows[1:])[1])]
    answered = {a["prediction_id"]: (row, a) for batch, answers in sent for row, a in zip(batch, answers, strict=True)}
    assert len(answered) == 4

    def logged() -> dict[str, dict[str, Any]]:
        return {r["prediction_id"]: r for r in kit.release.predictions("bc-svc", limit=5000) if r["prediction_id"]
                in answered}

    wait_for(lambda: len(logged()) == 4, 30, "the four predictions in the log")
    for pid, record in logged().items():
        row, answer = answered[pid]
        assert record["output"] == answer and record["inputs"] == row and record["error"] is None
        assert record["prediction"] == answer["prediction"] and record["tag"].startswith("bc-svc:")


def test_promotion_and_rollback_without_restart(server: Server, versions: dict[str, str],
                                                bc_result: TrainResult) -> None:
    rows = bc_result.splits.test.X.head(1).to_dict("records")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        package.promote(versions["v2"], "it is as good")
        wait_for(lambda: all(serving_model(client, rows) == versions["v2"] for _ in range(10)), BOUND_S,
                 "the new champion answers")
        assert client.get("/metadata").json()["tag"] == versions["v2"]
        package.rollback("bc-svc", "back")
        wait_for(lambda: all(serving_model(client, rows) == versions["v1"] for _ in range(10)), BOUND_S,
                 "the previous champion answers again")
        assert client.get("/release").json()["serving"]["challenger"] is None


def test_shadow_never_changes_the_answer(server: Server, versions: dict[str, str], bc_result: TrainResult) -> None:
    bundle, x = bc_result.bundle, bc_result.splits.test.X
    rows = x.to_dict("records")
    expected = [str(p) for p in bundle.predict(x)]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        package.promote(versions["v2"], "mirror it", shadow=True)
        wait_for(lambda: client.get("/release").json()["serving"]["mode"] == "shadow", BOUND_S, "shadow seen")
        time.sleep(float(POLL) * 3)
        for i, row in enumerate(rows):
            status, out, model = post(client, [row], f"k{i}")
            assert status == 200 and model == versions["v1"] and str(out[0]["prediction"]) == expected[i]
        report = wait_for_pairs(client, len(rows))
        assert report["agreement"]["paired"]["value"] == 1.0  # the same weights: they agree on every row
        roles = {v["role"]: v for v in report["versions"]}
        assert roles["challenger"]["routes"]["shadow"] >= len(rows)  # (earlier tests' canary rows are there too)
        scraped = client.get("/metrics").text
        assert 'kit_shadow_total{model="bc-svc",outcome="scored"' in scraped
        package.rollback("bc-svc", "done mirroring")


def wait_for_pairs(client: httpx.Client, n: int) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def ready() -> bool:
        found.update(client.get("/performance", params={"window": "10m"}).json())
        paired = (found.get("agreement") or {}).get("paired") or {}
        return int(paired.get("pairs", 0)) >= n

    wait_for(ready, 30, f"{n} shadow pairs in the log")
    return found


def test_shadow_survives_a_challenger_that_raises(server: Server, versions: dict[str, str],
                                                  bc_result: TrainResult) -> None:
    rows = bc_result.splits.test.X.head(2).to_dict("records")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        package.promote(versions["broken"], "mirror a broken one", shadow=True)
        wait_for(lambda: client.get("/release").json()["serving"]["challenger"] == versions["broken"], BOUND_S,
                 "broken shadow seen")
        time.sleep(float(POLL) * 3)
        for _ in range(30):
            status, out, model = post(client, rows)
            assert status == 200 and model == versions["v1"] and len(out) == 2
        wait_for(lambda: 'outcome="error"' in client.get("/metrics").text, 30, "shadow errors counted")
        package.rollback("bc-svc", "broken")


def monitors(server: Server) -> list[psutil.Process]:
    """The server's live-metrics child processes (kit.release._monitor)."""
    family = psutil.Process(server.proc.pid).children(recursive=True)
    return [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            and "kit.release._monitor" in " ".join(p.cmdline())]


def test_the_live_metrics_run_in_one_child_process_per_server(server: Server) -> None:
    # (before the tests that start servers of their own in the same BENTOML_HOME: a server that starts
    # clears the Prometheus files of the one already running there)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        wait_for(lambda: "kit_release_recommendation{" in client.get("/metrics").text, 60, "the report's gauges")
        wait_for(lambda: len(monitors(server)) == 1, 30, "one live-metrics process")
        [monitor] = monitors(server)  # started by the worker that holds the leader lock, not one per worker
        workers = {w.pid for w in psutil.Process(server.proc.pid).children(recursive=True)
                   if "_bentoml_impl.worker.service" in " ".join(w.cmdline())}
        leader = monitor.ppid()
        assert len(workers) == 2 and leader in workers
        monitor.kill()  # a child that dies is started again by the same worker
        wait_for(lambda: [m.pid for m in monitors(server)] not in ([], [monitor.pid]), 30, "a new live-metrics process")
        [again] = monitors(server)
        assert again.ppid() == leader
        before = reports(client)  # and it publishes: its reports are counted on every worker's /metrics
        wait_for(lambda: reports(client) >= before + 2, 30, "reports from the new live-metrics process")


def reports(client: httpx.Client) -> float:
    """``kit_release_reports_total{outcome="ok"}`` on /metrics."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("kit_release_reports_total{") and 'outcome="ok"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_failing_canary_is_answered_by_the_champion_and_rolled_back_automatically(
        home: Path, versions: dict[str, str], bc_result: TrainResult) -> None:
    rows = bc_result.splits.test.X.head(1).to_dict("records")
    package.promote(versions["broken"], "risky", canary=50)
    env = {"KIT_RELEASE_POLL_S": POLL, "KIT_AUTO_ROLLBACK": "1", "KIT_AUTO_ROLLBACK_S": "0.5",
           "KIT_ROLLBACK_MIN_ROWS": "20", "KIT_ROLLBACK_WINDOW_S": "600"}
    with serving(None, home, env=env) as s, httpx.Client(base_url=s.url, timeout=60) as client:
        answers = [post(client, rows, f"u{i}") for i in range(60)]
        # the canary failed on its share; the champion answered every request
        assert all(status == 200 and model == versions["v1"] for status, _, model in answers)
        wait_for(lambda: client.get("/release").json()["serving"]["challenger"] is None, 60, "automatic rollback")
        # the rollback was decided in the live-metrics child process; it ends when its worker dies
        [monitor] = monitors(s)
        monitor.parent().kill()
        wait_for(lambda: not monitor.is_running() or monitor.status() == psutil.STATUS_ZOMBIE, 15,
                 "the live-metrics process ends with its worker")
    entry = package.history("bc-svc")[-1]
    assert entry["event"] == "rollback" and entry["auto"] is True and entry["from"] == versions["broken"]
    assert "automatic" in entry["reason"] and "failed on" in entry["reason"]


def test_feedback_then_performance_equals_offline_metrics(server: Server, versions: dict[str, str],
                                                          bc_result: TrainResult) -> None:
    bundle, test = bc_result.bundle, bc_result.splits.test
    rows = test.X.to_dict("records")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        wait_for(lambda: client.get("/release").json()["serving"]["challenger"] is None, BOUND_S, "no trial")
        time.sleep(float(POLL) * 3)
        start = time.time()
        ids, answers = [], []
        for i in range(0, len(rows), 10):
            status, out, model = post(client, rows[i:i + 10])
            assert status == 200 and model == versions["v1"]
            ids += [r["prediction_id"] for r in out]
            answers += out
        labels = [bundle.label_names[y] for y in test.y]
        half = list(range(0, len(ids), 2))
        r = client.post("/feedback", json={"items": [{"prediction_id": ids[i], "label": labels[i]} for i in half]})
        assert r.status_code == 200, r.text
        csv = "prediction_id,label\n" + "".join(f"{ids[i]},{labels[i]}\n" for i in range(1, len(ids), 2))
        r = client.post("/feedback_file", files={"file": ("labels.csv", csv.encode(), "text/csv")})
        assert r.status_code == 200 and r.json()["accepted"] == len(range(1, len(ids), 2)), r.text
        bad = client.post("/feedback", json={"items": [{"prediction_id": ids[0], "label": "dog"}]})
        assert bad.status_code == 422 and bad.json()["field"] == "label" and bad.json()["row"] == 0
        window = f"{time.time() - start + 0.2:.3f}s"  # exactly this test's predictions (the last ones >= 0.9 s before)
        report = client.get("/performance", params={"window": window}).json()
    v = next(v for v in report["versions"] if v["tag"] == versions["v1"])
    assert v["predictions"] == len(rows) and v["labelled"] == len(rows)
    # offline, on the same rows: the probabilities the clients got and the labels sent back
    proba = np.array([[a["probabilities"][str(c)] for c in bundle.label_names] for a in answers])
    offline = metrics.classification(np.asarray(test.y), proba)
    notebook = metrics.classification(np.asarray(test.y), bundle.predict_proba(test.X))
    for key in ("accuracy", "f1", "roc_auc", "log_loss"):
        assert v["metrics"][key]["value"] == pytest.approx(offline[key], abs=1e-12), key
        assert v["metrics"][key]["value"] == pytest.approx(notebook[key], abs=1e-6), key  # float32 batch effects
    assert report["recommendation"]["action"] == "none"


@pytest.mark.postgres
def test_the_log_store_on_postgres(home: Path, versions: dict[str, str], bc_result: TrainResult,
                                   postgres_url: str) -> None:
    from kit.release import history, read
    from kit.release._state import change, promote_change

    # a name of its own in the shared database: the same versions under another name would not load, so
    # the store's state names this run's tags
    name = "bc-svc"
    url = postgres_url
    marker = uuid.uuid4().hex[:8]
    change(name, promote_change(versions["v1"], f"pg {marker}"), url)
    rows = bc_result.splits.test.X.head(5).to_dict("records")
    env = {"KIT_LOG_URL": url, "KIT_RELEASE_POLL_S": POLL}
    with serving(None, home, env=env) as s, httpx.Client(base_url=s.url, timeout=60) as client:
        status, out, model = post(client, rows)
        assert status == 200 and model == read(name, url).champion
        change(name, promote_change(versions["v2"], f"pg canary {marker}", canary=100), url)
        wait_for(lambda: post(client, rows[:1])[2] == versions["v2"], BOUND_S, "canary from PostgreSQL state")
        r = client.post("/feedback", json={"items": [{"prediction_id": out[0]["prediction_id"],
                                                     "label": bc_result.bundle.label_names[0]}]})
        assert r.json() == {"accepted": 1, "matched": 1, "unmatched": 0}
        report = client.get("/performance", params={"window": "5m"}).json()
    assert "postgresql" in report["store"] and "***" in report["store"]
    assert {v["tag"] for v in report["versions"]} >= {versions["v2"]}
    assert any(e["reason"] == f"pg canary {marker}" for e in history(name, url))
    from kit.release._state import rollback_change

    change(name, rollback_change("end"), url)


def test_metrics_need_a_key_and_the_metrics_key_opens_only_metrics(home: Path, versions: dict[str, str],
                                                                   bc_result: TrainResult) -> None:
    rows = bc_result.splits.test.X.head(1).to_dict("records")
    env = {"KIT_API_KEY": "s3cret", "KIT_METRICS_KEY": "prom-only"}
    with serving(None, home, env=env) as s:
        assert httpx.get(s.url + "/metrics", timeout=30).status_code == 401
        assert httpx.get(s.url + "/metrics", headers={"Authorization": "Bearer s3cret"}, timeout=30).status_code == 200
        ok = httpx.get(s.url + "/metrics", headers={"Authorization": "Bearer prom-only"}, timeout=30)
        assert ok.status_code == 200 and "# HELP" in ok.text
        denied = httpx.post(s.url + "/predict", json={"rows": rows}, headers={"Authorization": "Bearer prom-only"},
                            timeout=30)
        assert denied.status_code == 401
        assert httpx.get(s.url + "/performance", headers={"Authorization": "Bearer prom-only"},
                         timeout=30).status_code == 401
        feedback = httpx.post(s.url + "/feedback", json={"items": []}, timeout=30)
        assert feedback.status_code == 401


def test_shadow_survives_a_challenger_that_hangs(home: Path, versions: dict[str, str], bc_result: TrainResult) -> None:
    rows = bc_result.splits.test.X.head(1).to_dict("records")
    package.promote(versions["v2"], "mirror a hanging one", shadow=True)
    # one worker: /release reports the answering worker's shadow counters, and with two a reconnect can
    # land the check on a worker that saw none of the 200 requests
    env = {"KIT_RELEASE_POLL_S": POLL, "KIT_TEST_HANG_TAG": versions["v2"], "PYTHONPATH": FAULTS,
           "KIT_SHADOW_TIMEOUT_MS": "200", "KIT_WORKERS": "1"}
    try:
        with serving(None, home, env=env) as s, httpx.Client(base_url=s.url, timeout=60) as client:
            times = []
            for i in range(200):
                t0 = time.perf_counter()
                status, _, model = post(client, rows, f"h{i}")
                times.append(time.perf_counter() - t0)
                assert status == 200 and model == versions["v1"]
            # both shadow threads are held by the hanging challenger (counted as hung once they have run
            # longer than the shadow timeout, which 200 fast requests may not take); later jobs are dropped
            wait_for(lambda: client.get("/release").json()["shadow"]["hung"] == 2, 10, "two hung shadow threads")
            shadow = client.get("/release").json()["shadow"]
            assert shadow["dropped"] > 100 and shadow["scored"] == 0, shadow
            assert float(np.median(times)) < 0.25
    finally:
        package.rollback("bc-svc", "hanging")


def test_env_overrides_pin_the_challenger(home: Path, versions: dict[str, str], bc_result: TrainResult) -> None:
    rows = bc_result.splits.test.X.head(1).to_dict("records")
    package.promote(versions["v2"], "a small trial in the store", canary=5)  # (also: v2 is not retired now)
    env = {"KIT_CHALLENGER_TAG": versions["v2"], "KIT_CANARY_PERCENT": "100", "KIT_RELEASE_POLL_S": POLL}
    with serving(versions["v1"], home, env=env) as s, httpx.Client(base_url=s.url, timeout=60) as client:
        # the environment's 100 % wins over the store's 5 %
        assert all(post(client, rows, f"e{i}")[2] == versions["v2"] for i in range(50))
        info = client.get("/release").json()
        assert info["pinned_champion"] and info["env_challenger"] == versions["v2"]
        # a rollback retires the env challenger until it is promoted again
        package.rollback("bc-svc", "env trial over")
        wait_for(lambda: post(client, rows)[2] == versions["v1"], BOUND_S, "the retired env challenger is off")
