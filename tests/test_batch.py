"""The in-process streaming batch scorer: CSV and Parquet, kept columns, bad rows, errors naming the file row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit.bundle import ModelBundle
from kit.cli import main
from kit.errors import ConfigError, DataError, SchemaError
from kit.package import predict_file
from kit.train import TrainResult


@pytest.fixture(scope="module")
def bundle(bc_bundle: ModelBundle) -> ModelBundle:
    """breast_cancer on ONNX Runtime fp32, whose outputs do not depend on the batch (torch's last bits do)."""
    from kit import quantize

    return quantize.attach(bc_bundle, "ort-fp32")


@pytest.fixture(scope="module")
def rows(bc_result: TrainResult) -> pd.DataFrame:
    X = bc_result.splits.train.X.reset_index(drop=True)
    frame = pd.concat([X] * 4, ignore_index=True)
    return frame.assign(id=np.arange(len(frame)), region=np.where(np.arange(len(frame)) % 2, "north", "south"))


@pytest.mark.parametrize(("src_name", "dst_name"), [("in.csv", "out.parquet"), ("in.parquet", "out.csv")])
def test_csv_and_parquet_stream_through_infer(bundle: ModelBundle, rows: pd.DataFrame, tmp_path: Path,
                                              src_name: str, dst_name: str) -> None:
    src, dst = tmp_path / src_name, tmp_path / dst_name
    if src_name.endswith(".csv"):
        rows.to_csv(src, index=False)
    else:
        rows.to_parquet(src, row_group_size=100)
    summary = predict_file(bundle, src, dst, chunk_size=97, keep="id,region", progress=False)
    assert (summary.rows, summary.scored, summary.failed, summary.errors) == (len(rows), len(rows), 0, None)
    out = pd.read_parquet(dst) if dst_name.endswith(".parquet") else pd.read_csv(dst)
    ref = bundle.infer(rows[bundle.feature_names])
    labels = bundle.label_names or []
    assert list(out.columns) == ["id", "region", "prediction", *[f"proba_{c}" for c in labels], "model_tag"]
    assert out["id"].tolist() == rows["id"].tolist() and out["region"].tolist() == rows["region"].tolist()
    assert out["prediction"].tolist() == ref.labels
    # chunks of 97 rows, same probabilities as one call (CSV keeps doubles exactly through repr)
    np.testing.assert_array_equal(out[[f"proba_{c}" for c in labels]].to_numpy(), ref.probabilities)
    assert not list(tmp_path.glob(".*.tmp")), "the temporary output was renamed into place"


def test_on_error_skip_sets_bad_rows_aside_with_the_file_row(bundle: ModelBundle, rows: pd.DataFrame,
                                                             tmp_path: Path) -> None:
    bad = rows.astype({"mean radius": object})
    bad.loc[[3, 250, 251], "mean radius"] = ["abc", "", "x"]
    bad.loc[900, "worst area"] = np.inf
    bad.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(SchemaError) as info:  # default: stop at the first bad row, naming it in the whole file
        predict_file(bundle, tmp_path / "in.csv", tmp_path / "out.csv", chunk_size=100, progress=False)
    assert info.value.row == 3 and info.value.file == str(tmp_path / "in.csv") and "file row 3" in info.value.message
    assert not (tmp_path / "out.csv").exists()  # nothing half-written under the output's name
    summary = predict_file(bundle, tmp_path / "in.csv", tmp_path / "out.csv", chunk_size=100, keep="id",
                           on_error="skip", progress=False)
    # an empty CSV cell is a missing value (imputed), not an error
    assert (summary.scored, summary.failed) == (len(rows) - 3, 3)
    errors = pd.read_csv(summary.errors or "")
    assert summary.errors == str(tmp_path / "out.errors.csv")
    assert errors["row"].tolist() == [3, 251, 900] and errors["id"].tolist() == [3, 251, 900]
    assert errors["error_field"].tolist() == ["mean radius", "mean radius", "worst area"]
    assert "column 'mean radius' file row 251: expected a number, got 'x'" in errors["error"].tolist()
    out = pd.read_csv(tmp_path / "out.csv")
    good = bad.drop(index=[3, 251, 900])
    assert out["id"].tolist() == good["id"].tolist()
    clean = good[bundle.feature_names].replace("", np.nan).astype(float)
    assert out["prediction"].tolist() == bundle.infer(clean).labels
    # a later clean run removes the stale errors file
    rows.to_csv(tmp_path / "in.csv", index=False)
    assert predict_file(bundle, tmp_path / "in.csv", tmp_path / "out.csv", on_error="skip",
                        progress=False).errors is None
    assert not (tmp_path / "out.errors.csv").exists()


def test_bad_inputs_get_one_clear_error(bundle: ModelBundle, rows: pd.DataFrame, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    rows.drop(columns=["mean radius"]).to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(SchemaError, match="missing column 'mean radius'"):
        predict_file(bundle, tmp_path / "missing.csv", tmp_path / "out.csv", progress=False)
    rows.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(DataError, match="--keep column 'nope'"):
        predict_file(bundle, tmp_path / "in.csv", tmp_path / "out.csv", keep="nope", progress=False)
    with pytest.raises(ConfigError, match="name of an output column"):
        predict_file(bundle, tmp_path / "in.csv", tmp_path / "out.csv", keep="id,prediction", progress=False)
    with pytest.raises(ConfigError, match="output format"):
        predict_file(bundle, tmp_path / "in.csv", tmp_path / "out.json", progress=False)
    with pytest.raises(DataError, match="does not exist"):
        predict_file(bundle, tmp_path / "nope.csv", tmp_path / "out.csv", progress=False)
    bundle.save(tmp_path / "bundle")
    # Spark-only options are refused on the local engine, as one line and exit code 2
    assert main(["predict", "--bundle", str(tmp_path / "bundle"), str(tmp_path / "in.csv"), str(tmp_path / "o.csv"),
                 "--master", "local[2]"]) == 2
    assert "--master is an option of --engine spark" in capsys.readouterr().err
