import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kit
import kit.nets
from kit import IntegrityError, KitError, ModelBundle, SchemaError


def test_save_load_round_trip_gives_identical_predictions(bc_result, tmp_path: Path):
    bundle, X = bc_result.bundle, bc_result.splits.test.X
    loaded = ModelBundle.load(bundle.save(tmp_path / "b"))
    np.testing.assert_array_equal(loaded.predict_proba(X), bundle.predict_proba(X))
    assert list(loaded.predict(X)) == list(bundle.predict(X))
    assert loaded.metrics == bundle.metrics and loaded.configs == bundle.configs
    assert loaded.preprocessor.to_json() == bundle.preprocessor.to_json()


def test_bundle_files_are_safetensors_onnx_json_and_text_only(bc_bundle, tmp_path: Path):
    out = bc_bundle.save(tmp_path / "b")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bundle.json", "bundle.json.sha256", "network.onnx", "network_source.txt", "preprocessor.json",
                     "weights.safetensors"]
    manifest = json.loads((out / "bundle.json").read_text())
    assert set(manifest["files"]) == {"network.onnx", "network_source.txt", "preprocessor.json", "weights.safetensors"}
    # The network describes itself: builder, parameters, shapes, source sha256, and the export checked against torch.
    spec = manifest["spec"]
    assert (spec["builder"], spec["target"], spec["n_in"], spec["n_out"]) == ("mlp", "kit.nets.mlp:build", 30, 2)
    assert spec["source"]["sha256"] == kit.nets.sha256_text((out / "network_source.txt").read_text())
    assert spec["onnx"]["sha256"] == manifest["files"]["network.onnx"] and spec["onnx"]["max_abs_diff"] <= 1e-4


def test_lineage_records_where_the_model_came_from(bc_bundle):
    lineage = bc_bundle.lineage
    assert len(lineage["data_hash"]) == 64 and lineage["data_name"] == "breast_cancer"
    assert lineage["kit_version"] == kit.__version__ and lineage["torch_version"].startswith("2.13")
    assert "created_at" in lineage and "git_commit" in lineage
    assert bc_bundle.configs["train"]["epochs"] == 40


@pytest.mark.parametrize("victim", ["weights.safetensors", "preprocessor.json", "bundle.json", "network.onnx",
                                    "network_source.txt"])
def test_tampered_file_is_refused_by_name(bc_bundle, tmp_path: Path, victim: str):
    out = bc_bundle.save(tmp_path / "b")
    data = bytearray((out / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / victim).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=victim) as info:
        ModelBundle.load(out)
    assert info.value.file is not None and info.value.file.endswith(victim)


def test_missing_file_is_refused(bc_bundle, tmp_path: Path):
    out = bc_bundle.save(tmp_path / "b")
    (out / "weights.safetensors").unlink()
    with pytest.raises(IntegrityError, match="weights.safetensors is missing"):
        ModelBundle.load(out)
    with pytest.raises(IntegrityError, match="not a kit bundle"):
        ModelBundle.load(tmp_path)


def test_predict_accepts_records_frames_arrays_in_any_column_order(bc_result):
    bundle, X = bc_result.bundle, bc_result.splits.test.X.head(20)
    expected = bundle.predict_proba(X)
    np.testing.assert_array_equal(bundle.predict_proba(X.to_dict(orient="records")), expected)
    np.testing.assert_array_equal(bundle.predict_proba(X[X.columns[::-1]]), expected)
    np.testing.assert_array_equal(bundle.predict_proba(X.to_numpy()), expected)
    assert set(bundle.predict(X)) <= {"malignant", "benign"}
    assert np.allclose(expected.sum(axis=1), 1.0)


def test_infer_returns_labels_probabilities_and_frames(wine_result):
    out = wine_result.bundle.infer(wine_result.splits.test.X.head(3))
    assert out.label_names == ["class_0", "class_1", "class_2"] and len(out.labels) == 3
    frame = out.to_frame()
    assert list(frame.columns) == ["prediction", "proba_class_0", "proba_class_1", "proba_class_2"]
    assert json.dumps(out.to_dict())


def test_regression_bundle_has_no_proba(diabetes_result):
    with pytest.raises(KitError, match="predict_proba is for classifiers"):
        diabetes_result.bundle.predict_proba(diabetes_result.splits.test.X)
    assert diabetes_result.bundle.infer(diabetes_result.splits.test.X.head(2)).to_dict()["predictions"]


def test_predict_bad_input_is_a_schema_error(mixed_result):
    bundle = mixed_result.bundle
    row = bundle.example()[0]
    with pytest.raises(SchemaError, match="unseen category 'purple'") as info:
        bundle.predict([{**row, "color": "purple"}])
    assert info.value.field == "color"
    with pytest.raises(SchemaError, match="missing column 'size'"):
        bundle.predict([{k: v for k, v in row.items() if k != "size"}])
    with pytest.raises(SchemaError, match="unexpected column 'extra'"):
        bundle.predict([{**row, "extra": 1}])
    # Missing values are imputed, not refused.
    assert len(bundle.predict([{**row, "weight": None, "color": None}])) == 1


def test_schema_lists_types_and_categories(mixed_result):
    schema = mixed_result.bundle.schema
    color = next(f for f in schema["features"] if f["name"] == "color")
    assert color["categories"] == ["blue", "green", "red"] and schema["labels"] == ["no", "yes"]


def test_no_pickle_on_the_load_path(bc_bundle, tmp_path: Path):
    out = bc_bundle.save(tmp_path / "b")
    code = (
        "import sys, pickle, kit\n"
        "def refuse(*a, **k): raise AssertionError('pickle used on the load path')\n"
        "pickle.load = pickle.loads = pickle.Unpickler = refuse\n"
        f"b = kit.ModelBundle.load({str(out)!r}); print(b.predict(b.example(2)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
