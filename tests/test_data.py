from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kit
from kit import DataError
from kit.data import BUILTINS, detect_task


@pytest.mark.parametrize(("name", "task", "rows", "features"), [
    ("breast_cancer", "binary", 569, 30), ("wine", "multiclass", 178, 13),
    ("digits", "multiclass", 1797, 64), ("diabetes", "regression", 442, 10),
])
def test_builtins_load_with_their_task(name, task, rows, features):
    ds = kit.load(name)
    assert (ds.task, len(ds.frame), len(ds.feature_names)) == (task, rows, features)
    assert set(BUILTINS) == {"breast_cancer", "wine", "digits", "diabetes"}


def test_builtin_labels_keep_sklearn_names():
    ds = kit.load("breast_cancer")
    assert ds.label_names == ["malignant", "benign"]
    # Class index 1 is "benign", as in scikit-learn's encoding.
    assert ds.y[ds.frame["target"].to_numpy() == "benign"].min() == 1


def test_split_is_stratified_seeded_and_disjoint():
    ds = kit.load("breast_cancer")
    a, b = ds.split(seed=3), ds.split(seed=3)
    assert a.test.X.equals(b.test.X)
    assert len(a.train) + len(a.valid) + len(a.test) == len(ds.frame)
    # Stratification keeps the class balance within a couple of points in every part.
    overall = ds.y.mean()
    for part in (a.train, a.valid, a.test):
        assert abs(part.y.mean() - overall) < 0.03
    assert not ds.split(seed=4).test.X.equals(a.test.X)


def test_csv_and_parquet_and_dataframe(tmp_path: Path, mixed_csv: Path):
    ds = kit.load(mixed_csv, target="label")
    assert ds.task == "binary" and ds.label_names == ["no", "yes"]
    pq = tmp_path / "mixed.parquet"
    ds.frame.to_parquet(pq)
    assert kit.load(pq, target="label").data_hash == ds.data_hash
    assert kit.load(ds.frame, target="label").task == "binary"


def test_task_detection_and_override():
    assert detect_task(pd.Series([0, 1, 1, 0])) == "binary"
    assert detect_task(pd.Series([1, 2, 3, 2, 1])) == "multiclass"
    assert detect_task(pd.Series(np.linspace(0, 1, 50))) == "regression"
    assert detect_task(pd.Series(["a", "b", "c"])) == "multiclass"
    frame = pd.DataFrame({"x": range(30), "y": [i % 3 for i in range(30)]})
    assert kit.load(frame, target="y").task == "multiclass"
    assert kit.load(frame, target="y", task="regression").task == "regression"


def test_summary_shows_rows_dtypes_missing_and_balance(mixed_csv: Path):
    summary = kit.load(mixed_csv, target="label").summary()
    assert summary.rows == 400 and summary.features == 3
    assert summary.columns.loc["weight", "missing"] == 20
    assert summary.columns.loc["color", "kind"] == "categorical"
    assert summary.class_balance is not None and summary.class_balance["rows"].sum() == 400
    assert "400 rows" in str(summary) and "<table" in summary._repr_html_()


# -- bad input: each a DataError naming the file / column ---------------------------------------

def test_empty_csv(tmp_path: Path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty") as info:
        kit.load(empty, target="y")
    assert info.value.file == str(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b,y\n")
    with pytest.raises(DataError, match="no data rows"):
        kit.load(header_only, target="y")


def test_missing_target_column_lists_columns(mixed_csv: Path):
    with pytest.raises(DataError, match=r"'price' is not in mixed.csv \(columns: size, color") as info:
        kit.load(mixed_csv, target="price")
    assert info.value.field == "price"


def test_all_nan_column(tmp_path: Path):
    path = tmp_path / "nan.csv"
    pd.DataFrame({"a": range(10), "b": [np.nan] * 10, "y": [0, 1] * 5}).to_csv(path, index=False)
    with pytest.raises(DataError, match="'b'.*all missing") as info:
        kit.load(path, target="y")
    assert info.value.field == "b"


def test_text_in_numeric_column_names_row(tmp_path: Path):
    path = tmp_path / "typo.csv"
    values = [str(i) for i in range(20)]
    values[7] = "twelve"
    pd.DataFrame({"a": values, "y": [0, 1] * 10}).to_csv(path, index=False)
    # the message names the file's line (the header is line 1), the error keeps the 0-based row
    with pytest.raises(DataError, match=r"'a' in typo.csv is numeric but line 9 \(data row 7\) holds 'twelve'") as info:
        kit.load(path, target="y")
    assert (info.value.field, info.value.row) == ("a", 7)


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown dataset 'iris'.*breast_cancer"):
        kit.load("iris")


def test_missing_file_and_bad_extension(tmp_path: Path):
    with pytest.raises(DataError, match="no such file"):
        kit.load(tmp_path / "nope.csv", target="y")
    other = tmp_path / "data.xlsx"
    other.write_text("x")
    with pytest.raises(DataError, match="use a .csv or .parquet"):
        kit.load(other, target="y")


def test_missing_target_values_are_refused_not_dropped():
    frame = pd.DataFrame({"a": range(6), "y": [0, 1, None, 1, 0, 1]})
    with pytest.raises(DataError, match="missing in 1 rows.*row 2") as info:
        kit.load(frame, target="y")
    assert info.value.row == 2


def test_single_class_and_too_rare_class():
    with pytest.raises(DataError, match="single class"):
        kit.load(pd.DataFrame({"a": range(6), "y": ["x"] * 6}), target="y")
    frame = pd.DataFrame({"a": range(12), "y": ["p"] * 6 + ["q"] * 5 + ["r"]})
    with pytest.raises(DataError, match="class 'r'.*fewer than 3"):
        kit.load(frame, target="y").split()
