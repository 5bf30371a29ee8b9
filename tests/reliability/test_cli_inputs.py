"""Library bad inputs through the CLI: each bad CSV gives exit code != 0, one clear line, no traceback.

The cases are the foundation's CSV failure modes, sent through ``kit train`` (loading), plus rows that
do not fit a stored model, sent through ``kit predict`` (batch scoring) and ``kit gate``.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

def write(path: Path, frame: pd.DataFrame | None = None, text: str | bytes | None = None) -> str:
    if frame is not None:
        frame.to_csv(path, index=False)
    elif isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text or "")
    return str(path)


def train_cases(d: Path) -> list[tuple[str, list[str], str]]:
    """(case, [CSV path, target], expected words in the message)."""
    typo = [str(i) for i in range(20)]
    typo[7] = "twelve"
    ab = {"a": range(10), "y": [0, 1] * 5}
    return [
        ("empty file", [write(d / "empty.csv"), "y"], "empty.csv is empty"),
        ("header only", [write(d / "header.csv", text="a,b,y\n"), "y"], "no data rows"),
        ("missing target column", [write(d / "t.csv", pd.DataFrame(ab)), "price"], "target column 'price' is not in"),
        ("all-missing column", [write(d / "nan.csv", pd.DataFrame({**ab, "b": [np.nan] * 10})), "y"],
         "'b' in nan.csv has no values"),
        ("text in numeric column", [write(d / "typo.csv", pd.DataFrame({"a": typo, "y": [0, 1] * 10})), "y"],
         "line 9 (data row 7) holds 'twelve'"),
        ("missing target values", [write(d / "my.csv", pd.DataFrame({"a": range(6), "y": [0, 1, None, 1, 0, 1]})),
                                   "y"], "missing in 1 rows"),
        ("single class", [write(d / "one.csv", pd.DataFrame({"a": range(6), "y": ["x"] * 6})), "y"], "single class"),
        ("too rare class", [write(d / "rare.csv", pd.DataFrame({"a": range(12), "y": ["p"] * 6 + ["q"] * 5 + ["r"]})),
                            "y"], "fewer than 3"),
        ("no such file", [str(d / "nope.csv"), "y"], "no such file"),
        ("not a csv", [write(d / "data.xlsx", text="x"), "y"], "use a .csv or .parquet"),
        ("ragged rows", [write(d / "ragged.csv", text="a,y\n1,0\n2,1,3,4\n"), "y"], "cannot parse ragged.csv"),
        ("binary garbage", [write(d / "bin.csv", text=bytes(range(256)) * 4), "y"], "bin.csv"),
    ]


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kit.cli", *args], capture_output=True, text=True, timeout=180)


def test_bad_csvs_give_one_clear_line_and_no_traceback(tmp_path: Path, rel_home: dict[str, Any],
                                                       mixed_result, ledger) -> None:
    calls: list[tuple[str, list[str], str]] = []
    for case, (path, target), words in train_cases(tmp_path):
        # `kit train` and `kit data` share the loading path; train (it imports torch) for a few, and for
        # the rare class, which only the train/valid/test split refuses
        if case in ("empty file", "text in numeric column", "too rare class", "ragged rows"):
            calls.append((f"train: {case}", ["train", "--data", path, "--target", target, "--out",
                                             str(tmp_path / "out"), "--epochs", "1", "-q"], words))
        else:
            calls.append((f"data: {case}", ["data", "--data", path, "--target", target], words))
    rows = mixed_result.splits.test.X.head(5)
    missing = write(tmp_path / "missing_col.csv", rows.drop(columns=["weight"]))
    wrong = rows.astype(object)
    wrong.loc[wrong.index[3], "size"] = "big"
    calls += [
        ("predict: missing column", ["predict", "--tag", rel_home["tag"], missing, str(tmp_path / "p.csv"), "-q"],
         "missing column 'weight'"),
        ("predict: text in numeric", ["predict", "--tag", rel_home["tag"], write(tmp_path / "w.csv", wrong),
                                      str(tmp_path / "p.csv"), "-q"], "'size'"),
        ("gate: not a bundle", ["gate", "--bundle", str(tmp_path)], "bundle.json is missing"),
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda call: run(call[1]), calls))
    failures = []
    for (case, _, words), proc in zip(calls, results, strict=True):
        lines = proc.stderr.strip().splitlines()
        if proc.returncode == 0 or "Traceback" in proc.stderr or len(lines) != 1 or words not in proc.stderr:
            failures.append(f"{case}: exit {proc.returncode}, stderr={proc.stderr[-400:]!r}")
    ledger.record("cli_bad_inputs", tried=len(calls), failures=len(failures))
    assert not failures, "\n".join(failures)
