import json

import numpy as np
import pandas as pd
import pytest

from kit import DataError, NotFittedError, Preprocessor, SchemaError

TRAIN = pd.DataFrame({
    "age": [20.0, 30.0, np.nan, 50.0, 40.0],
    "city": ["paris", "rome", "paris", None, "oslo"],
    "income": [1.0, 2.0, 3.0, 4.0, 5.0],
})


def fitted(policy: str = "error") -> Preprocessor:
    return Preprocessor(policy).fit(TRAIN)


def test_refuses_to_transform_before_fit():
    with pytest.raises(NotFittedError):
        Preprocessor().transform(TRAIN)


def test_standardizes_imputes_and_one_hot_encodes():
    pre = fitted()
    assert pre.output_names_ == ["age", "city=oslo", "city=paris", "city=rome", "income"]
    out = pre.transform(TRAIN)
    assert out.dtype == np.float32 and out.shape == (5, 5)
    # Missing age -> training median (35), standardized with the training mean (35) -> 0.
    assert out[2, 0] == pytest.approx(0.0)
    # Missing city -> most frequent training category (paris).
    assert out[3, 1:4].tolist() == [0.0, 1.0, 0.0]
    assert out[:, 4].mean() == pytest.approx(0.0, abs=1e-6)


def test_fitted_statistics_match_per_column_numpy():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(3.0, 2.0, size=(200, 6)), columns=[f"f{i}" for i in range(6)])
    X.iloc[::7, 2] = np.nan  # missing values in one column only
    X["const"], X["label"] = 4.0, rng.choice(["a", "b"], 200)
    pre = Preprocessor().fit(X)
    for name in [f"f{i}" for i in range(6)]:
        present = X[name].dropna().to_numpy()
        assert pre.medians_[name] == pytest.approx(np.median(present), rel=1e-12)
        assert pre.means_[name] == pytest.approx(present.mean(), rel=1e-12)
        assert pre.scales_[name] == pytest.approx(present.std(), rel=1e-12)
    # a constant column carries nothing to learn: left out of the features, recorded with its value
    assert "const" not in pre.feature_names_in_ and pre.constant_ == {"const": 4.0}
    assert pre.kinds_["label"] == "categorical"


@pytest.mark.parametrize(("column", "values", "match", "row"), [
    ("b", [1.0, np.inf, 2.0], "column 'b' holds an infinite value at row 1", 1),
    ("b", [np.nan, np.nan, np.nan], "column 'b' has no values", None),
    ("c", [None, None, None], "column 'c' has no values", None),
])
def test_fit_refuses_unusable_training_columns(column, values, match, row):
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0], "c": ["x", "y", "x"]})
    X[column] = values
    with pytest.raises(DataError, match=match) as info:
        Preprocessor().fit(X)
    assert (info.value.field, info.value.row) == (column, row)


def test_records_frames_and_arrays_agree_and_order_does_not_matter():
    pre = fitted()
    records = TRAIN.to_dict(orient="records")
    shuffled = [dict(reversed(list(r.items()))) for r in records]
    expected = pre.transform(TRAIN)
    np.testing.assert_array_equal(pre.transform(records), expected)
    np.testing.assert_array_equal(pre.transform(shuffled), expected)
    np.testing.assert_array_equal(pre.transform(TRAIN[["income", "city", "age"]]), expected)
    np.testing.assert_array_equal(pre.transform(TRAIN.to_numpy(dtype=object)), expected)
    np.testing.assert_array_equal(pre.transform(records[0]), expected[:1])


def test_json_round_trip_is_exact():
    pre = fitted()
    again = Preprocessor.from_json(pre.to_json())
    np.testing.assert_array_equal(again.transform(TRAIN), pre.transform(TRAIN))
    assert again.to_json() == pre.to_json()
    assert json.loads(pre.to_json())["format"] == "kit.preprocessor/1"


@pytest.mark.parametrize(("rows", "match", "field", "row"), [
    ([{"age": 1, "city": "rome"}], "missing column 'income'", "income", 0),
    ([{"age": 1, "city": "rome", "income": 2, "zip": 9}], "unexpected column 'zip'", "zip", 0),
    ([{"age": 1, "city": "rome", "income": 2}, {"age": "old", "city": "rome", "income": 2}],
     "'age' row 1: expected a number, got 'old'", "age", 1),
    ([{"age": float("inf"), "city": "rome", "income": 2}], "infinite", "age", 0),
    ([{"age": 1, "city": "lima", "income": 2}], "unseen category 'lima'; known: oslo, paris, rome", "city", 0),
    ([["not", "a", "dict"]], "row 0 is a list", None, 0),
])
def test_bad_rows_name_the_column_and_row(rows, match, field, row):
    with pytest.raises(SchemaError, match=match) as info:
        fitted().transform(rows)
    assert (info.value.field, info.value.row) == (field, row)


def test_unseen_category_can_be_ignored():
    out = fitted("ignore").transform([{"age": 1, "city": "lima", "income": 2}])
    assert out[0, 1:4].tolist() == [0.0, 0.0, 0.0]


def test_wrong_array_width():
    with pytest.raises(SchemaError, match=r"shape \(rows, 3\)"):
        fitted().transform(np.zeros((2, 4)))


def test_schema_and_example_validate():
    pre = fitted()
    kinds = {f["name"]: f["kind"] for f in pre.schema()}
    assert kinds == {"age": "numeric", "city": "categorical", "income": "numeric"}
    assert pre.transform([pre.example()]).shape == (1, 5)


def test_vectorized_transform_equals_the_column_by_column_path():
    rng = np.random.default_rng(1)
    n = 300
    X = pd.DataFrame({"a": rng.normal(0, 3, n), "b": rng.integers(0, 9, n).astype(float),
                      "c": rng.choice(["x", "y", "z"], n), "d": rng.normal(5, 1, n), "e": rng.choice(["u", "v"], n)})
    pre = Preprocessor().fit(X)
    X.loc[::5, "a"] = np.nan
    X.loc[::7, "c"] = None
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
               for r in X.astype(object).to_dict("records")]
    records[3]["b"] = 4  # an int, and a number given as text, are read as numbers like before
    records[4]["d"] = "5.5"
    for given in (X, records, records[:1], X.to_numpy(dtype=object), []):
        cols, rows = pre.columns(given)
        # bit for bit: the joint float64 arithmetic is the per-column arithmetic
        np.testing.assert_array_equal(pre.transform(given), pre._transform_columns(cols, rows))


def test_the_first_bad_value_in_schema_order_is_named():
    row = {"age": 1, "city": "lima", "income": float("inf")}
    # 'city' comes before 'income' in the schema, so its unseen category is the one named, as before
    with pytest.raises(SchemaError, match="unseen category 'lima'") as info:
        fitted().transform([{"age": 1, "city": "rome", "income": 2}, row])
    assert (info.value.field, info.value.row) == ("city", 1)
    with pytest.raises(SchemaError, match="'age' row 0: expected a number, got 1000000000"):
        fitted().transform([{"age": 10**400, "city": "rome", "income": 2}])  # too large for a float: a 4xx, not a crash


@pytest.mark.parametrize("columns", [["a"], ["a", "b"], ["c", "a"], ["c"]])
def test_records_path_equals_the_column_by_column_path_for_any_mix_of_kinds(columns):
    # one numeric column (a getter of one name returns a bare value), all numeric (the dense layout),
    # categorical first (numeric output columns not in order), categorical only
    X = pd.DataFrame({"a": [1.0, 2.5, np.nan, 4.0], "b": [3.0, 1.0, 2.0, 9.0], "c": ["x", "y", None, "x"]})[columns]
    pre = Preprocessor().fit(X)
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
               for r in X.astype(object).to_dict("records")]
    cols, rows = pre.columns(records)
    np.testing.assert_array_equal(pre.transform(records), pre._transform_columns(cols, rows))
    np.testing.assert_array_equal(pre.transform(records), pre.transform(X))


def test_a_refit_transforms_with_the_new_statistics():
    pre = Preprocessor().fit(pd.DataFrame({"a": [0.0, 2.0], "c": ["x", "y"]}))
    row = {"a": 2.0, "c": "y"}
    assert pre.transform([row]).tolist() == [[1.0, 0.0, 1.0]]
    pre.fit(pd.DataFrame({"a": [2.0, 6.0], "c": ["y", "z"]}))  # the same object, fitted again
    assert pre.transform([row]).tolist() == [[-1.0, 1.0, 0.0]]
