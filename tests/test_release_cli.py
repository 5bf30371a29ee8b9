"""The release from the command line and from the Package panel: promote as champion, canary or shadow,
roll back, release status and history."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _server import use_bentoml_home

from kit import package
from kit.bundle import ModelBundle
from kit.cli import main


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bentoml_home")
    use_bentoml_home(path)
    return path


def test_cli_promote_canary_shadow_status_rollback(home: Path, bc_bundle: ModelBundle,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    v1, v2 = package.save(bc_bundle, "bc-rel"), package.save(bc_bundle, "bc-rel")
    assert main(["promote", v1, "--reason", "first"]) == 0
    assert main(["promote", v2, "--canary", "20", "--reason", "try it"]) == 0
    out = capsys.readouterr().out
    assert f"{v2} on trial beside {v1}: 20% of requests" in out and "switch within 2 s" in out
    assert main(["models", "bc-rel"]) == 0
    assert "canary 20%" in capsys.readouterr().out
    assert main(["release", "status", "bc-rel", "--window", "1h"]) == 0
    out = capsys.readouterr().out
    assert f"champion {v1}, challenger {v2} (canary 20%)" in out and "no predictions in the window" in out
    assert "recommendation: KEEP" in out
    assert main(["promote", v2, "--shadow", "--reason", "mirror instead"]) == 0
    assert main(["rollback", "bc-rel", "--reason", "not now"]) == 0
    assert f"ended the trial of {v2}: bc-rel serves {v1} only" in capsys.readouterr().out
    assert main(["release", "history", "bc-rel"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "canary" in lines[1] and "shadow" in lines[2] and "not now" in lines[3]
    # bad input: one clear line naming the field, exit 2
    assert main(["promote", v2, "--canary", "0", "--reason", "r"]) == 2
    assert "[field=canary]" in capsys.readouterr().err
    assert main(["release", "status", "bc-rel", "--window", "soon"]) == 2
    assert "[field=window]" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --canary and --shadow exclude each other
        main(["promote", v2, "--canary", "5", "--shadow", "--reason", "r"])


UI_SCRIPT = """
import sys
import kit
from kit.bundle import ModelBundle
from kit.ui import PackagePanel, Session

s = Session(output_dir=sys.argv[2], smoke=True)
s.load_data(kit.DataConfig())
s.set_bundle(ModelBundle.load(sys.argv[1]), "train")
p = PackagePanel(s)
p.name.value = "ui-rel"
first = p.save()
p.release.promote(first, mode="champion", reason="first")
second = p.save()
assert p.release.versions()[0] == second
p.release.mode.value = "canary"
p.release.percent.value = 15
p.release.reason.value = "try"
entry = p.release.promote()
print("CANARY", entry["event"], entry["percent"], entry["tag"] == second, p.release.output.value)
report = p.release.status("1h")
print("STATUS", report["release"]["challenger"] == second, "KEEP" in p.release.output.value)
back = p.release.rollback("enough")
print("ROLLBACK", back["what"], back["tag"] == first)
assert p.release.widget in p.widget.children
"""


def test_package_panel_release_controls(tmp_path: Path, bc_bundle: ModelBundle) -> None:
    """In a subprocess: the BentoML store location is fixed when bentoml is imported."""
    path = bc_bundle.save(tmp_path / "bundle")
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "KIT_LOG_URL": ""}
    out = subprocess.run([sys.executable, "-c", UI_SCRIPT, str(path), str(tmp_path / "out")], env=env,
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CANARY canary 15.0 True" in out.stdout and "15% of requests" in out.stdout
    assert "STATUS True True" in out.stdout and "ROLLBACK challenger True" in out.stdout
