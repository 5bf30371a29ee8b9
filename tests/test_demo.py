"""`make demo` end to end (smoke sizes, no server): every step runs and leaves its artifact."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kit.bundle import ModelBundle


@pytest.mark.slow
def test_demo_runs_every_step_and_builds_a_bento(tmp_path: Path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    proc = subprocess.run(
        [sys.executable, "-m", "kit.cli", "demo", "--out", str(tmp_path / "out"), "--smoke", "--no-serve"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in ("data", "train", "tune", "explain", "quantize", "gate", "package", "build the bento"):
        assert f"] {step}" in proc.stdout
    bundle = ModelBundle.load(tmp_path / "out" / "bundle")
    # The served bundle carries every step's record: tuning, explanation, quantization and gate.
    assert {"tuning", "explanation", "quantization", "gate"} <= set(bundle.sections)
    assert bundle.sections["gate"]["passed"] is True
    assert bundle.metrics["test"]["accuracy"] >= 0.9
    assert (tmp_path / "out" / "card" / "MODEL_CARD.md").is_file()
    from kit.release import history, store_url

    log = history(url=store_url(tmp_path / "bentoml" / "kit_release.db"))
    assert log[-1]["event"] == "promote" and log[-1]["tag"].startswith("breast-cancer:")
    assert "bento: kit:" in proc.stdout
