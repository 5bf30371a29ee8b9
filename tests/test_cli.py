import subprocess
import sys
from pathlib import Path

import pandas as pd

from kit.bundle import ModelBundle
from kit.cli import main

KIT = [sys.executable, "-m", "kit.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KIT, *args], capture_output=True, text=True, timeout=300)


def test_train_saves_bundle_and_prints_metrics_table(tmp_path: Path, capsys):
    code = main(["train", "--data", "wine", "--out", str(tmp_path / "b"), "--epochs", "15", "-q"])
    out = capsys.readouterr().out
    assert code == 0
    assert "accuracy" in out and "valid" in out and "test" in out and "bundle saved to" in out
    assert ModelBundle.load(tmp_path / "b").task == "multiclass"


def test_train_on_csv_with_target(tmp_path: Path, mixed_csv: Path, capsys):
    code = main(["train", "--data", str(mixed_csv), "--target", "label", "--out", str(tmp_path / "m"),
                 "--epochs", "5", "--hidden", "16,8", "-q"])
    assert code == 0
    assert ModelBundle.load(tmp_path / "m").configs["train"]["hidden"] == [16, 8]


def test_train_with_another_network_prints_it_next_to_the_baselines(tmp_path: Path, capsys):
    code = main(["train", "--data", "wine", "--out", str(tmp_path / "r"), "--epochs", "3", "-q", "--net", "resmlp",
                 "--net-params", '{"width": 32, "blocks": 1}', "--dropout", "0.2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "network resmlp(" in out and "width=32" in out and "dropout=0.2" in out
    test_rows = len(ModelBundle.load(tmp_path / "r").reload_data().splits.test)  # wine, default split: 27
    assert f"baselines on the same split ({test_rows} test rows)" in out and "hist_gradient_boosting" in out
    assert "ONNX export checked against torch: max abs diff" in out
    bundle = ModelBundle.load(tmp_path / "r")
    assert bundle.net.params == {"width": 32, "blocks": 1, "dropout": 0.2} and "network.onnx" in bundle.artifacts
    # tuning takes the same two options (a net.* key checked against the builder before any trial)
    code = main(["tune", "--data", "wine", "--net", "resmlp", "--net-params", '{"blocks": 1}', "--n-trials", "2",
                 "--epochs", "2", "--run-dir", str(tmp_path / "t"), "--out", str(tmp_path / "tb"),
                 "--pruner", "none", "--space", str(_space(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0 and "net.width = " in out
    assert ModelBundle.load(tmp_path / "tb").net.params["blocks"] == 1


def _space(tmp_path: Path) -> Path:
    path = tmp_path / "space.json"
    path.write_text('{"net.width": "int(8, 32, log)", "lr": "float(1e-3, 1e-2, log)"}')
    return path


def test_bad_inputs_exit_nonzero_with_one_clear_line_and_no_traceback(tmp_path: Path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    bad_space = tmp_path / "bad.json"
    bad_space.write_text('{"net.depth": "int(1, 3)"}')
    cases = [
        (["train", "--data", "iris", "--out", str(tmp_path / "x")], "unknown dataset 'iris'"),
        (["train", "--data", str(empty), "--target", "y", "--out", str(tmp_path / "x")], "empty.csv is empty"),
        (["train", "--data", "wine", "--out", str(tmp_path / "x"), "--epochs", "0"], "epochs must be >= 1"),
        (["train", "--data", "wine", "--out", str(tmp_path / "x"), "--net-params", "{width: 3}"],
         "--net-params must be a JSON object"),
        (["train", "--data", "wine", "--out", str(tmp_path / "x"), "--net", "my_nets:build"],
         "network builder 'my_nets:build' cannot be imported: No module named 'my_nets'"),
        (["train", "--data", "wine", "--out", str(tmp_path / "x"), "--net", "resmlp", "--hidden", "8"],
         "network 'resmlp' has no parameter 'hidden' (given as hidden)"),
        (["tune", "--data", "wine", "--net", "resmlp", "--run-dir", str(tmp_path / "t"), "--space", str(bad_space)],
         "search space parameter 'net.depth': value 1 is invalid: network 'resmlp' has no parameter 'depth'"),
    ]
    for args, message in cases:
        proc = run(*args)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_target_column_via_cli(tmp_path: Path, mixed_csv: Path):
    proc = run("train", "--data", str(mixed_csv), "--target", "nope", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "target column 'nope' is not in mixed.csv" in proc.stderr


def test_data_summary_command(capsys, mixed_csv: Path):
    assert main(["data", "--data", str(mixed_csv), "--target", "label"]) == 0
    assert "400 rows, 3 features" in capsys.readouterr().out


def test_metrics_table_is_splits_by_metrics():
    from kit.metrics import table as metrics_table

    table = metrics_table({"valid": {"accuracy": 0.9}, "test": {"accuracy": 0.8}})
    assert pd.Series(table.split()).tolist()[:2] == ["valid", "test"]
