"""Batch scoring on a real Apache Spark ``local[2]`` session (one per module): same predictions as ``bundle.infer``.

Needs Java (the ``java_home`` fixture: `make test` provisions it) and pyspark (the ``spark`` extra).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit.bundle import ModelBundle
from kit.cli import main
from kit.errors import ConfigError, IntegrityError, KitError, SchemaError
from kit.train import TrainResult

pyspark = pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def spark(java_home: Path) -> Iterator[object]:
    from kit.package import spark_session

    os.environ["JAVA_HOME"] = str(java_home)
    session = spark_session("local[2]", app_name="kit tests", config={"spark.ui.enabled": "false"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def onnx_bundle(bc_bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kit import quantize

    path = tmp_path_factory.mktemp("bundles") / "bc-onnx"
    quantize.attach(bc_bundle, "ort-fp32").save(path)
    return path


def _rows(bc_result: TrainResult, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` breast-cancer rows resampled with noise, with an ``id`` column."""
    X = bc_result.splits.train.X.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    rows = X.iloc[rng.integers(0, len(X), n)].reset_index(drop=True)
    rows = rows * rng.normal(1.0, 0.05, rows.shape)
    return rows.assign(id=np.arange(n))


@pytest.fixture(scope="module")
def big_parquet(bc_result: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "rows.parquet"
    _rows(bc_result, 200_000).to_parquet(path, row_group_size=25_000)  # several row groups: several tasks
    return path


def _read(folder: Path, fmt: str = "parquet") -> pd.DataFrame:
    files = sorted(folder.glob("part-*"))
    frame = pd.concat([pd.read_parquet(f) if fmt == "parquet" else pd.read_csv(f) for f in files], ignore_index=True)
    return frame.sort_values("id").reset_index(drop=True)


def test_200k_rows_on_spark_equal_in_process_infer_row_for_row(spark: object, onnx_bundle: Path, big_parquet: Path,
                                                               tmp_path: Path) -> None:
    from kit.package import predict_spark_file

    out = tmp_path / "scored"
    summary = predict_spark_file(big_parquet, out, onnx_bundle, keep="id", spark=spark, progress=False)
    assert (summary.rows, summary.scored, summary.failed, summary.parts) == (200_000, 200_000, 0, 1)
    got = _read(out)
    bundle = ModelBundle.load(onnx_bundle)
    frame = pd.read_parquet(big_parquet)
    ref = bundle.infer(frame[bundle.feature_names])
    assert got["id"].tolist() == list(range(200_000))
    assert got["prediction"].tolist() == ref.labels
    labels = bundle.label_names or []
    # identical, not merely close: the executors run the same bundle.infer on the same ONNX graph
    assert np.array_equal(got[[f"proba_{c}" for c in labels]].to_numpy(), ref.probabilities)
    assert set(got["model_tag"]) == {summary.tag}
    assert list(got.columns) == ["id", "prediction", *[f"proba_{c}" for c in labels], "model_tag"]
    # the bundle is loaded once per Python worker (at most one per task slot), not once per batch
    record = json.loads((out / "_kit_parts" / "part-00000.json").read_text())
    assert record["batches"] >= 20 and 1 <= record["bundle_loads"] <= 2, record
    manifest = json.loads((out / "_kit_manifest.json").read_text())
    assert manifest["complete"] and manifest["totals"]["rows"] == 200_000 and (out / "_SUCCESS").exists()
    # the output is one ordinary dataset for Spark too (it skips the "_" files)
    assert spark.read.parquet(str(out)).count() == 200_000  # type: ignore[attr-defined]
    # another run into the same output with other options is refused, naming the difference
    with pytest.raises(KitError, match="another options"):
        predict_spark_file(big_parquet, out, onnx_bundle, keep=None, spark=spark, progress=False)


def test_csv_input_with_categories_equals_the_in_process_scorer(spark: object, mixed_result: TrainResult,
                                                                mixed_csv: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from kit import quantize

    quantize.attach(mixed_result.bundle, "ort-fp32").save(tmp_path / "bundle")  # both engines on one ONNX graph
    frame = pd.read_csv(mixed_csv).assign(id=lambda d: np.arange(len(d)))
    frame.to_csv(tmp_path / "in.csv", index=False)
    assert main(["predict", "--engine", "spark", "--bundle", str(tmp_path / "bundle"), str(tmp_path / "in.csv"),
                 str(tmp_path / "out.csv"), "--keep", "id,color", "-q"]) == 0
    assert "scored 400 rows" in capsys.readouterr().out
    assert main(["predict", "--bundle", str(tmp_path / "bundle"), str(tmp_path / "in.csv"),
                 str(tmp_path / "local.csv"), "--keep", "id,color", "-q"]) == 0
    got, local = _read(tmp_path / "out.csv", "csv"), pd.read_csv(tmp_path / "local.csv")
    # Spark reads CSV as text and the bundle parses it; same rows, labels and probabilities as in-process
    assert got["prediction"].tolist() == local["prediction"].tolist()
    probas = [c for c in local.columns if c.startswith("proba_")]
    np.testing.assert_array_equal(got[probas].to_numpy(), local[probas].to_numpy())
    assert got["color"].fillna("").tolist() == local["color"].fillna("").tolist()


def test_on_error_skip_writes_bad_rows_with_reasons(spark: object, onnx_bundle: Path, bc_result: TrainResult,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = _rows(bc_result, 3_000, seed=1).astype({"mean radius": object})
    frame.loc[[10, 2_500], "mean radius"] = ["abc", "1,5"]
    frame["mean radius"] = frame["mean radius"].astype(str)
    frame.loc[777, "worst area"] = np.inf
    frame.to_parquet(tmp_path / "bad.parquet")
    args = ["predict", "--engine", "spark", "--bundle", str(onnx_bundle), str(tmp_path / "bad.parquet"),
            str(tmp_path / "out"), "--keep", "id"]
    # default: the first bad row stops the job with one line naming the file and the row
    assert main([*args, "-q"]) == 2
    err = capsys.readouterr().err
    assert "kit predict: error: column" in err and "bad.parquet" in err and "row=" in err
    assert main([*args, "--on-error", "skip", "--overwrite", "-q"]) == 0
    assert "3 rows failed the schema" in capsys.readouterr().err
    scored, errors = _read(tmp_path / "out"), _read(tmp_path / "out" / "_errors")
    assert len(scored) == 2_997 and 10 not in set(scored["id"])
    assert errors["id"].tolist() == [10, 777, 2_500]
    assert errors["input_row"].tolist() == [10, 777, 2_500] and errors["input_file"].str.endswith("bad.parquet").all()
    assert errors["error_field"].tolist() == ["mean radius", "worst area", "mean radius"]
    assert "expected a number, got 'abc'" in errors["error"][0] and "infinite" in errors["error"][1]


def test_killed_driver_resumes_skipping_finished_parts(spark: object, onnx_bundle: Path, bc_result: TrainResult,
                                                       tmp_path: Path) -> None:
    from kit.package import predict_spark_file

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    frame = _rows(bc_result, 24_000, seed=2)
    for i in range(12):  # a dataset of 12 part files: 12 resumable parts with --part-mb 0.000001
        frame.iloc[i * 2_000:(i + 1) * 2_000].to_parquet(src / f"part-{i:02d}.parquet")
    cmd = [sys.executable, "-m", "kit.cli", "predict", "--engine", "spark", "--bundle", str(onnx_bundle), str(src),
           str(out), "--keep", "id", "--master", "local[2]", "--part-mb", "0.000001", "-q"]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    log = tmp_path / "driver.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    records = out / "_kit_parts"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and len(list(records.glob("*.json"))) < 2:
            time.sleep(0.05)
    finally:
        # kill the driver mid-run for real: SIGKILL to its process group (driver, JVM, Python workers)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finished = {p.name: p.stat().st_mtime_ns for p in records.glob("*.json")}
    assert 2 <= len(finished) < 12, f"not stopped mid-way ({len(finished)} parts): {log.read_text()[-3000:]}"
    assert not (out / "_SUCCESS").exists()
    summary = predict_spark_file(src, out, onnx_bundle, keep="id", part_bytes=1, spark=spark, progress=False)
    assert summary.skipped_parts == len(finished) and summary.parts == 12
    # finished parts were not scored again, and nothing is duplicated or lost
    assert all((records / name).stat().st_mtime_ns == mtime for name, mtime in finished.items())
    got = _read(out)
    assert got["id"].tolist() == list(range(24_000))
    bundle = ModelBundle.load(onnx_bundle)
    assert got["prediction"].tolist() == bundle.infer(frame[bundle.feature_names]).labels
    assert not (out / "_kit_tmp").exists() and (out / "_SUCCESS").exists()


def test_a_bundle_file_changed_on_the_executor_is_refused(spark: object, bc_bundle: ModelBundle,
                                                          bc_result: TrainResult, tmp_path: Path) -> None:
    from pyspark import SparkFiles

    from kit import quantize
    from kit.package import predict_spark, raising_kit_errors

    bundle = quantize.attach(bc_bundle, "ort-fp32").with_section("test", {"case": "tamper"})  # not cached yet
    rows = spark.createDataFrame(_rows(bc_result, 100, seed=3))  # type: ignore[attr-defined]
    staging = tmp_path / "staging"
    scored = predict_spark(rows, bundle, keep="id", staging=staging)  # lazy: nothing ran on an executor yet
    (shipped,) = [p for p in staging.iterdir() if p.name.startswith("kit-bundle-")]
    # the copy executors read differs from what the driver verified (here: the preprocessor's state)
    for copy in (shipped, Path(SparkFiles.get(shipped.name))):
        state = json.loads((copy / "preprocessor.json").read_text())
        state["means"] = {k: v + 1.0 for k, v in state["means"].items()}
        (copy / "preprocessor.json").write_text(json.dumps(state))
    with pytest.raises(IntegrityError, match=r"preprocessor\.json .* differs from the file the driver verified"), \
            raising_kit_errors():
        scored.collect()


def test_a_torch_bundle_is_scored_through_its_onnx_export(spark: object, bc_bundle: ModelBundle,
                                                          bc_result: TrainResult) -> None:
    from kit.package import predict_spark

    assert bc_bundle.runtime_info["name"] == "torch"
    frame = _rows(bc_result, 500, seed=4)
    got = predict_spark(spark.createDataFrame(frame), bc_bundle, keep="id").toPandas()  # type: ignore[attr-defined]
    got = got.sort_values("id").reset_index(drop=True)
    ref = bc_bundle.infer(frame[bc_bundle.feature_names])
    labels = bc_bundle.label_names or []
    # the export is checked against torch at export time; probabilities agree to float32 rounding
    np.testing.assert_allclose(got[[f"proba_{c}" for c in labels]].to_numpy(), ref.probabilities, atol=1e-5)
    with pytest.raises(ConfigError, match="runs on torch and carries no ONNX export"):
        predict_spark(spark.createDataFrame(frame), bc_bundle, export_onnx=False)  # type: ignore[attr-defined]


def test_missing_feature_is_refused_on_the_driver(spark: object, onnx_bundle: Path, bc_result: TrainResult) -> None:
    from kit.package import predict_spark

    frame = _rows(bc_result, 10).drop(columns=["mean radius"])
    with pytest.raises(SchemaError, match="missing column 'mean radius'"):
        predict_spark(spark.createDataFrame(frame), onnx_bundle)  # type: ignore[attr-defined]


def test_predict_spark_reads_a_csv_path(spark: object, onnx_bundle: Path, bc_result: TrainResult,
                                        tmp_path: Path) -> None:
    from kit.package import predict_spark

    frame = _rows(bc_result, 300, seed=5)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    got = predict_spark(str(tmp_path / "rows.csv"), onnx_bundle, keep="id", spark=spark).toPandas()
    bundle = ModelBundle.load(onnx_bundle)
    # CSV columns arrive as text (the kept id too) and are parsed by the bundle's preprocessor
    assert got.assign(id=got["id"].astype(int)).sort_values("id")["prediction"].tolist() == \
        bundle.infer(frame[bundle.feature_names]).labels


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    import kit
    from kit.train import train

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train("digits_images", kit.TrainConfig(net="cnn", epochs=1), baselines=False)
    finally:
        torch.set_num_threads(saved)
    return result.bundle.save(tmp_path_factory.mktemp("bundles") / "digits-cnn")


REFUSAL = "image bundles are scored with `kit predict FOLDER_OR_ZIP"

_NO_JVM_SCRIPT = """
import json, sys
from pyspark import SparkContext
from kit.cli import main
from kit.errors import ConfigError
from kit.package import predict_spark, predict_spark_file

bundle, folder, out = sys.argv[1:]
messages = []
for call in (lambda: predict_spark_file(folder, out, bundle, progress=False),
             lambda: predict_spark(folder, bundle, fmt="csv")):
    try:
        call()
    except ConfigError as exc:
        messages.append([str(exc), exc.field])
code = main(["predict", "--engine", "spark", "--bundle", bundle, folder, out, "--conf", "spark.ui.enabled=false", "-q"])
print(json.dumps({"messages": messages, "code": code, "jvm": SparkContext._gateway is not None}))
"""


def test_an_image_bundle_is_refused_before_the_jvm_starts(image_bundle: Path, java_home: Path,
                                                          tmp_path: Path) -> None:
    from _images import write_digits

    folder = write_digits(tmp_path / "pictures", limit=20)
    env = {**os.environ, "JAVA_HOME": str(java_home)}  # Spark could start: the refusal must come first
    env.pop("PYSPARK_GATEWAY_PORT", None)
    done = subprocess.run([sys.executable, "-c", _NO_JVM_SCRIPT, str(image_bundle), str(folder),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    # predict_spark_file, predict_spark on a path and `kit predict --engine spark` (with --conf) each raise
    # one ConfigError naming the model and the one-process scorer, and no JVM was started for any of them
    assert len(answer["messages"]) == 2 and answer["jvm"] is False
    assert all(REFUSAL in message and field == "model" for message, field in answer["messages"])
    assert answer["code"] == 2 and REFUSAL in done.stderr and "[field=model]" in done.stderr
    assert not (tmp_path / "out").exists()


def test_an_image_bundle_on_a_running_session_starts_no_job(spark: object, image_bundle: Path) -> None:
    from kit.package import predict_spark

    sc = spark.sparkContext  # type: ignore[attr-defined]
    frame = spark.createDataFrame(pd.DataFrame({"image": ["aGVsbG8="]}))  # type: ignore[attr-defined]
    sc.setJobGroup("kit-image-refusal", "an image bundle on Spark")
    try:
        with pytest.raises(ConfigError, match="kit predict FOLDER_OR_ZIP") as info:
            predict_spark(frame, image_bundle)
    finally:
        sc.setJobGroup("", "")
    assert info.value.field == "model"
    assert list(sc.statusTracker().getJobIdsForGroup("kit-image-refusal")) == []
