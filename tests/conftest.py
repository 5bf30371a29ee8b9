"""Shared fixtures: small trained bundles (session scope) and the tools that ``make test`` provisions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

import kit
from kit.bundle import ModelBundle
from kit.train import TrainResult, train

FAST = kit.TrainConfig(epochs=40, patience=10, seed=0)


@pytest.fixture(scope="session")
def bc_result() -> TrainResult:
    """breast_cancer trained with fast settings (binary)."""
    return train("breast_cancer", FAST)


@pytest.fixture(scope="session")
def bc_bundle(bc_result: TrainResult) -> ModelBundle:
    return bc_result.bundle


@pytest.fixture(scope="session")
def wine_result() -> TrainResult:
    """wine trained with fast settings (multiclass)."""
    return train("wine", FAST)


@pytest.fixture(scope="session")
def diabetes_result() -> TrainResult:
    """diabetes trained with fast settings (regression)."""
    return train("diabetes", FAST)


@pytest.fixture(scope="session")
def mixed_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV with numeric, categorical and missing values and a text target."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 400
    color = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(10, 3, n)
    weight = rng.normal(50, 10, n)
    score = size * 0.5 + (color == "red") * 3 - (color == "blue") * 2 + rng.normal(0, 1, n)
    frame = pd.DataFrame({"size": size, "color": color, "weight": weight,
                          "label": np.where(score > np.median(score), "yes", "no")})
    frame.loc[rng.choice(n, 20, replace=False), "weight"] = np.nan
    frame.loc[rng.choice(n, 10, replace=False), "color"] = None
    path = tmp_path_factory.mktemp("data") / "mixed.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def mixed_result(mixed_csv: Path) -> TrainResult:
    return train(kit.DataConfig(source=str(mixed_csv), target="label"), FAST)


# --- parts provisioned outside the venv by `make test` (.ci/provision.sh) ---------------------------
# Each fixture below returns a tool the provisioning script installed or started. Under plain
# `pytest` a missing part skips the tests that need it, naming it; `make test` sets KIT_REQUIRE_ALL=1,
# and then a missing part fails them, so a provisioned run never passes by skipping.

REQUIRE_ALL = "KIT_REQUIRE_ALL"


def _missing(what: str, how: str) -> NoReturn:
    """Skip, or fail under KIT_REQUIRE_ALL, because ``what`` is not available."""
    if os.environ.get(REQUIRE_ALL):
        pytest.fail(f"{what} is missing although {REQUIRE_ALL} is set: {how}", pytrace=False)
    pytest.skip(f"{what} is missing ({how}; `make test` provisions it)")


def _executable(env_var: str, name: str) -> str:
    """The executable named by ``env_var`` (what make test exports), else ``name`` on PATH."""
    path = os.environ.get(env_var) or shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        _missing(name, f"{env_var} is {os.environ.get(env_var)!r} and {name!r} is not on PATH")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL (with password) of the throwaway PostgreSQL server that ``make test`` starts."""
    url = os.environ.get("KIT_TEST_POSTGRES_URL")
    if not url:
        _missing("PostgreSQL", "KIT_TEST_POSTGRES_URL is not set")
    return url


@pytest.fixture(scope="session")
def java_home() -> Path:
    """A Java runtime home (``JAVA_HOME``, else derived from ``java`` on PATH) with ``bin/java``."""
    home = os.environ.get("JAVA_HOME")
    if not home and (java := shutil.which("java")):
        home = str(Path(java).resolve().parents[1])
    if not home or not os.access(Path(home) / "bin" / "java", os.X_OK):
        _missing("Java", f"JAVA_HOME is {os.environ.get('JAVA_HOME')!r} and no usable java is on PATH")
    return Path(home)


@pytest.fixture(scope="session")
def chromium_bin() -> str:
    """Debian's ``chromium`` executable (``KIT_TEST_CHROMIUM``, else on PATH)."""
    return _executable("KIT_TEST_CHROMIUM", "chromium")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """The ``prometheus`` server executable (``KIT_TEST_PROMETHEUS``, else on PATH)."""
    return _executable("KIT_TEST_PROMETHEUS", "prometheus")


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    """Prometheus's ``promtool`` (``KIT_TEST_PROMTOOL``, else on PATH)."""
    return _executable("KIT_TEST_PROMTOOL", "promtool")
