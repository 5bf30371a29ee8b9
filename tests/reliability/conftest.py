"""Shared pieces of the reliability suite.

* ``rel_home``: a private BentoML home holding the served model (the gated mixed-CSV model with a
  SHAP background, so every endpoint does real work), saved and promoted through kit.package.
* ``server``: one real ``bentoml serve`` (tests/_server.py) with an API key, for fuzz, load and auth.
* ``ledger``: each part records requests tried and failures; the lines are printed in pytest's
  terminal summary (also without ``-s``) and written to tests/artifacts/reliability.json.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _server import Server, serving, use_bentoml_home

from kit import package
from kit.bundle import ModelBundle
from kit.gate import GateConfig, check
from kit.train import TrainResult

ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "reliability.json"
API_KEY = "kit-rel-" + secrets.token_hex(16)
RESULTS: dict[str, dict[str, Any]] = {}


class Ledger:
    """Per-part figures: ``record("load", tried=5000, failures=0, p99_ms=...)``."""

    def record(self, part: str, *, tried: int, failures: int, **figures: Any) -> None:
        RESULTS[part] = {"tried": tried, "failures": failures, **figures,
                         "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        print(f"\n{summary_line(part, RESULTS[part])}")


def summary_line(part: str, row: dict[str, Any]) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("tried", "failures", "at"))
    return f"reliability {part}: {row['tried']} tried, {row['failures']} failures" + (f" ({extra})" if extra else "")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("reliability summary")
    for part, row in RESULTS.items():
        terminalreporter.write_line(summary_line(part, row))
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(ARTIFACT.read_text()) if ARTIFACT.is_file() else {}
    ARTIFACT.write_text(json.dumps({**previous, **RESULTS}, indent=1, sort_keys=True) + "\n")
    terminalreporter.write_line(f"written to {ARTIFACT}")


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture(scope="package")
def served_bundle(mixed_result: TrainResult) -> ModelBundle:
    """The mixed model, gated (the gate must pass or packaging refuses it) and with a SHAP background."""
    from kit import explain

    bundle = mixed_result.bundle
    train_x = mixed_result.splits.train.X
    bundle = explain.attach(bundle, explain.explain(bundle, train_x.head(20), background=train_x,
                                                    background_size=30))
    # three features, one of them ('color') decisive: one missing value legitimately flips ~20%
    # and on its 60 test rows in 10 bins the ECE's sampling noise alone is several points: the default
    # recipe's label smoothing leaves it about 0.11, so the calibration limit is 0.15 here
    config = GateConfig(skip=("explanation_stability",), max_missing_flip_rate=0.3, max_ece=0.15)
    report = check(bundle, config=config)
    assert report.passed, str(report)
    return bundle.with_section(report)


@pytest.fixture(scope="package")
def rel_home(tmp_path_factory: pytest.TempPathFactory, served_bundle: ModelBundle) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("bentoml_home_rel")
    use_bentoml_home(home)
    tag = package.save(served_bundle, "relmixed")
    package.promote(tag, "reliability suite")
    return {"home": home, "tag": tag, "bundle": served_bundle}


@pytest.fixture(scope="package")
def server(rel_home: dict[str, Any]) -> Iterator[Server]:
    env = {"KIT_API_KEY": API_KEY, "KIT_MAX_EXPLAIN_ROWS": "5", "KIT_MAX_ROWS": "200"}
    with serving(rel_home["tag"], rel_home["home"], env=env) as srv:
        yield srv


@pytest.fixture(scope="package")
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}
