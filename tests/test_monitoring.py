"""The monitoring the bento ships: alert rules checked and unit-tested with promtool, and a real Prometheus
scraping a real `bentoml serve` (with its read-only metrics key) that fires the drift alert on a shifted
input stream; every Grafana dashboard query runs on that Prometheus."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from _server import Server, free_port, serving, use_bentoml_home

from kit import package
from kit.train import TrainResult

MONITORING = Path(__file__).resolve().parents[1] / "bentos" / "monitoring"


def test_promtool_checks_the_shipped_rules(promtool_bin: str) -> None:
    out = subprocess.run([promtool_bin, "check", "rules", str(MONITORING / "alerts.yml")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 9 rules found" in out.stdout


RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'kit_drift_features_drifted{{job="kit", instance="a"}}'
        values: '0 0 2x30'
      - series: 'kit_release_requests_total{{job="kit", model="bc", version="v2", route="canary"}}'
        values: '0+100x30'
      - series: 'kit_release_errors_total{{job="kit", model="bc", version="v2", route="canary"}}'
        values: '0+20x30'
      - series: 'kit_release_requests_total{{job="kit", model="bc", version="v1", route="champion"}}'
        values: '0+900x30'
      - series: 'kit_release_errors_total{{job="kit", model="bc", version="v1", route="champion"}}'
        values: '0x30'
      - series: 'kit_model_test_metric{{job="kit", model="bc", version="v1", metric="accuracy"}}'
        values: '0.95x30'
      - series: 'kit_live_metric{{job="kit", model="bc", version="v1", role="champion", metric="accuracy"}}'
        values: '0.94x10 0.85x20'
      - series: 'kit_live_labelled{{job="kit", model="bc", version="v1"}}'
        values: '500x30'
      - series: 'kit_release_recommendation{{job="kit", model="bc", action="roll back"}}'
        values: '0x5 1x25'
    alert_rule_test:
      - eval_time: 1m
        alertname: KitInputDrift
        exp_alerts: []
      - eval_time: 20m
        alertname: KitInputDrift
        exp_alerts:
          - exp_labels: {{severity: warning, job: kit, instance: a}}
            exp_annotations:
              summary: "Input drift on a: 2 feature(s) differ from the training data"
              description: "GET /drift lists the features, their KS/chi-squared statistics, corrected p-values and PSI."
      - eval_time: 10m
        alertname: KitHighErrorRate
        exp_alerts:
          - exp_labels: {{severity: critical, job: kit, model: bc, version: v2, route: canary}}
            exp_annotations:
              summary: "bc:v2 (canary) fails on 20% of requests"
              description: >-
                A canary challenger's failures are answered by the champion;
                roll it back with kit rollback bc.
      - eval_time: 8m
        alertname: KitLiveAccuracyDrop
        exp_alerts: []
      - eval_time: 28m
        alertname: KitLiveAccuracyDrop
        exp_alerts:
          - exp_labels: {{severity: critical, job: kit, model: bc, version: v1}}
            exp_annotations:
              summary: "Live accuracy of bc:v1 is 0.100 below its test accuracy"
              description: "kit release status bc shows the live metrics with their intervals."
      - eval_time: 15m
        alertname: KitChallengerWorse
        exp_alerts:
          - exp_labels: {{severity: critical, job: kit, model: bc}}
            exp_annotations:
              summary: "The challenger of bc is worse than the champion"
              description: >-
                Run kit release status bc for the test used, then kit rollback bc
                (or set KIT_AUTO_ROLLBACK=1).
"""


def test_promtool_unit_tests_of_the_rules(promtool_bin: str, tmp_path: Path) -> None:
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(RULE_TESTS.format(rules=json.dumps(str(MONITORING / "alerts.yml"))))
    out = subprocess.run([promtool_bin, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_the_dashboard_is_a_grafana_dashboard_over_kit_metrics() -> None:
    dash = json.loads((MONITORING / "dashboard.json").read_text())
    assert dash["uid"] and dash["panels"] and {v["name"] for v in dash["templating"]["list"]} == {"datasource", "model"}
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in ("kit_release_requests_total", "kit_release_errors_total", "kit_release_latency_seconds_bucket",
                   "kit_release_predictions_total", "kit_drift_features_drifted", "kit_drift_statistic",
                   "kit_live_metric", "kit_shadow_disagreements_total", "kit_release_canary_percent"):
        assert metric in exprs, metric


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory, mixed_result: TrainResult,
              prometheus_bin: str) -> Iterator[dict[str, Any]]:
    """A real server (API key on, a read-only metrics key for Prometheus) and a real Prometheus scraping it."""
    home = tmp_path_factory.mktemp("bentoml_home")
    use_bentoml_home(home)
    tag = package.save(mixed_result.bundle, "mixed-mon")
    package.promote(tag, "monitoring test")
    env = {"KIT_API_KEY": "full-key", "KIT_METRICS_KEY": "metrics-only", "KIT_DRIFT_WINDOW": "300"}
    with serving(None, home, env=env) as server:
        work = tmp_path_factory.mktemp("prometheus")
        (work / "kit_metrics_key").write_text("metrics-only\n")
        rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                rule["for"] = "1s"  # production waits minutes; the test waits a second
        (work / "alerts.yml").write_text(yaml.safe_dump(rules))
        config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())  # the shipped scrape config
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        job = config["scrape_configs"][0]
        job["authorization"]["credentials_file"] = str(work / "kit_metrics_key")
        job["static_configs"] = [{"targets": [server.url.removeprefix("http://")]}]
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        with open(work / "prometheus.log", "wb") as log:
            proc = subprocess.Popen([prometheus_bin, f"--config.file={work / 'prometheus.yml'}",
                                     f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                    stdout=log, stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{port}"
            try:
                _until(lambda: _up(url), 60, "Prometheus scraping the server", work)
                yield {"server": server, "prometheus": url, "result": mixed_result, "work": work}
            finally:
                proc.terminate()
                proc.wait(30)


def _up(url: str) -> bool:
    try:
        targets = httpx.get(url + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    except (httpx.HTTPError, KeyError, ValueError):
        return False
    return bool(targets) and targets[0]["health"] == "up"


def _until(check: Any, timeout: float, what: str, work: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = (work / "prometheus.log").read_text(errors="replace")[-2000:] if work else ""
    raise AssertionError(f"not within {timeout:.0f}s: {what}\n{tail}")


def _alert(url: str, name: str) -> str | None:
    alerts = httpx.get(url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return next((a["state"] for a in alerts if a["labels"]["alertname"] == name), None)


def _send(server: Server, rows: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": "Bearer full-key"}) as client:
        for i in range(0, len(rows), 20):
            r = client.post("/predict", json={"rows": rows[i:i + 20]})
            assert r.status_code == 200, r.text


@pytest.mark.server
@pytest.mark.slow
def test_prometheus_fires_the_drift_alert_on_a_shifted_stream(monitored: dict[str, Any]) -> None:
    from test_service import records

    server, prom, result = monitored["server"], monitored["prometheus"], monitored["result"]
    # the scrape used the read-only key; the same key opens nothing else
    assert httpx.post(server.url + "/predict", json={"rows": []}, timeout=30,
                      headers={"Authorization": "Bearer metrics-only"}).status_code == 401
    train = result.splits.train.X
    _send(server, records(train.sample(300, replace=True, random_state=0)))
    time.sleep(4)  # a few scrapes and evaluations of data like the training data: no alert
    assert _alert(prom, "KitInputDrift") is None
    shifted = train.sample(300, replace=True, random_state=1).copy()
    shifted["size"] = shifted["size"] * 3 + 20
    shifted["color"] = "red"  # the category mix shifts too
    _send(server, records(shifted))
    _until(lambda: _alert(prom, "KitInputDrift") == "firing", 90, "KitInputDrift firing", monitored["work"])
    drifted = httpx.get(prom + "/api/v1/query", params={"query": "kit_drift_features_drifted"}, timeout=5).json()
    assert float(drifted["data"]["result"][0]["value"][1]) >= 2


@pytest.mark.server
@pytest.mark.slow
def test_every_dashboard_query_runs_on_prometheus(monitored: dict[str, Any]) -> None:
    prom = monitored["prometheus"]
    dash = json.loads((MONITORING / "dashboard.json").read_text())
    for panel in dash["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$model", ".*").replace("$__rate_interval", "1m")
            answer = httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=10).json()
            assert answer["status"] == "success", (panel["title"], expr, answer)
