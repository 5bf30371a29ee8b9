"""Shared fixtures: small trained bundles, reused across test modules (session scope)."""

from __future__ import annotations

import os
from pathlib import Path

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


@pytest.fixture()
def postgres_url() -> str:
    """URL of the PostgreSQL server that .ci/run starts (skipped only outside CI)."""
    url = os.environ.get("KIT_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("KIT_TEST_POSTGRES_URL is not set; .ci/run must start PostgreSQL")
        pytest.skip("KIT_TEST_POSTGRES_URL not set (run through .ci/run)")
    return url
