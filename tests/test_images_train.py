"""A CNN on real PNG files: the cnn builder, image builders, training with bounded inputs, augmentation, the bundle.

Training runs on one torch thread: on the shared 2-core CI machine two spinning threads make a small
conv net about 20x slower (measured), and one thread is what a busy machine gives anyway.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from _images import write_digits
from torch import nn

import kit
from kit import nets
from kit.bundle import ModelBundle
from kit.errors import BuilderError, ConfigError, SchemaError
from kit.nets.cnn import blocks_for
from kit.preprocess import encode_png
from kit.runtime import Runtime
from kit.train import TrainResult, train


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits(tmp_path_factory.mktemp("digit_pngs"))


@pytest.fixture(scope="module")
def result(folder: Path) -> TrainResult:
    return train(folder, kit.TrainConfig(net="cnn", epochs=30, patience=8, seed=0))


def test_cnn_on_digit_pngs_reaches_the_accuracy_the_issue_asks(result):
    # The issue's bar: test accuracy >= 0.97 on the digits written as PNG files.
    assert result.bundle.metrics["test"]["accuracy"] >= 0.97
    # The conv net beats the baselines fitted on the same flattened pixels.
    baselines = result.bundle.baselines
    assert baselines is not None
    best = max(m["test"]["accuracy"] for m in baselines.models.values())
    assert result.bundle.metrics["test"]["accuracy"] >= best


def test_the_bundle_says_it_is_an_image_model_and_round_trips(result, tmp_path):
    bundle = result.bundle
    assert bundle.kind == "image" and bundle.schema["kind"] == "image"
    assert bundle.schema["features"][0] | {"height": 8, "width": 8, "channels": 1} == bundle.schema["features"][0]
    assert bundle.net.input == "image" and bundle.net.shape == (1, 8, 8)
    assert bundle.configs["data"]["kind"] == "image"
    assert set(bundle.reference) == {"image.mean.L", "image.std.L", "image.height", "image.width"}
    path = bundle.save(tmp_path / "b")
    loaded = ModelBundle.load(path)
    assert loaded.kind == "image" and loaded.spec["onnx"]["max_abs_diff"] < 1e-4
    X = result.splits.test.X
    expected = bundle.predict_proba(X)
    assert np.allclose(loaded.predict_proba(X), expected, atol=1e-6)
    # The stored ONNX export predicts the same classes as torch.
    loaded.set_runtime("onnxruntime", artifact="network.onnx")
    assert np.array_equal(loaded.predict(X), bundle.predict(X))
    # The data reloads from the folder, split as in training.
    again = loaded.reload_data()
    assert again.matches_lineage and again.splits.test.y.tolist() == result.splits.test.y.tolist()


def test_base64_png_records_predict_like_the_decoded_split(result):
    bundle = result.bundle
    pixels = np.stack(result.splits.test.X["image"].to_numpy())
    records = [{"image": base64.b64encode(encode_png(p)).decode()} for p in pixels]
    assert np.array_equal(bundle.predict_proba(records), bundle.predict_proba(result.splits.test.X))
    assert bundle.predict([bundle.example()[0]]).shape == (1,)


class Recording(Runtime):
    """A bundle's own runtime, recording the rows of every call."""

    def __init__(self, inner: Runtime) -> None:
        self.inner, self.batch_invariant, self.calls = inner, inner.batch_invariant, list[int]()

    def run(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        return self.inner.run(x)


@pytest.mark.parametrize("variant", ["torch-fp32", "ort-int8-static", "ort-int8-dynamic"])
def test_infer_scores_thousands_of_images_in_bounded_chunks_with_one_calls_answers(result, folder, variant):
    from kit import quantize
    from kit._infer import CHUNK_ROWS
    from kit.prediction import softmax

    bundle = result.bundle.copy() if variant == "torch-fp32" else quantize.attach(result.bundle, variant)
    pixels = np.stack(result.splits.train.X["image"].to_list())
    images = np.concatenate([pixels] * 3)[:3000]
    one_call = softmax(bundle.runtime.run(bundle.transform(images)).astype(np.float64))
    recorder = Recording(bundle.runtime)
    bundle.set_runtime(recorder)
    got = bundle.infer(images)
    if recorder.batch_invariant:  # torch, static int8: fixed chunks, exactly the answers of one call
        assert recorder.calls == [CHUNK_ROWS, CHUNK_ROWS, 3000 - 2 * CHUNK_ROWS]
    else:  # dynamic int8's rows move with their batch: the input (one group) runs whole, as one call would
        assert recorder.calls == [3000]
    assert np.array_equal(got.probabilities, one_call)
    # groups (the service's merged requests) keep their own answers either way
    recorder.calls.clear()
    grouped = bundle.infer(images[:1500], groups=[700, 800])
    alone = [bundle.infer(images[:700]), bundle.infer(images[700:1500])]
    assert np.array_equal(grouped.probabilities, np.concatenate([p.probabilities for p in alone]))


def test_a_bad_image_deep_in_a_chunked_call_is_named_by_its_row(result, folder):
    files = sorted(folder.rglob("*.png"))
    rows = [{"image": files[i % len(files)]} for i in range(2500)]
    rows[2100] = {"image": b"not an image"}
    with pytest.raises(SchemaError, match="row 2100: the image is not a PNG or JPEG") as info:
        result.bundle.infer(rows)
    assert (info.value.row, info.value.field) == (2100, "image")


def test_the_model_card_has_an_images_section(result, folder):
    from kit.card import card

    bundle = result.bundle
    pre = bundle.preprocessor
    md = card(bundle).markdown()
    assert "from 1x8x8 images" in md and "imputed" not in md  # the overview and limits speak of images
    section = md[md.index("## Images"):md.index("## Metrics")]
    assert "| input (channels, height, width) | 1, 8, 8 |" in section and "| channels | 1 (grayscale" in section
    assert "| resize policy | none: every image must be 8x8" in section
    assert f"| mean | L={pre.mean_[0]:.6g} |" in section and f"| std | L={pre.std_[0]:.6g} |" in section
    assert "| classes | 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 |" in section
    # samples per class and split, from the split the model was trained on
    counts = np.bincount(result.splits.train.y, minlength=10)
    assert f"| 0 | {counts[0]} | " in section
    files = len(list(folder.rglob("*.png")))
    assert f"| all | {len(result.splits.train)} | {len(result.splits.valid)} | {len(result.splits.test)} | {files} |" \
        in section
    # the drift reference the service compares requests with
    reference = bundle.reference["image.mean.L"]
    assert f"| mean intensity (L) | image.mean.L | {reference['n']} |" in section
    assert f"{reference['quantiles'][50]:.4g}" in section and "| file height (px) | image.height |" in section


def test_cnn_is_sized_from_the_input_shape():
    assert [blocks_for(s, s) for s in (4, 8, 16, 28, 32, 224)] == [1, 2, 3, 3, 3, 3]
    small = nets.call(nets.resolve("cnn"), (3, 8, 8), 4, {})
    big = nets.call(nets.resolve("cnn"), (3, 64, 48), 4, {})
    assert sum(isinstance(m, nn.MaxPool2d) for m in small.modules()) == 2
    assert sum(isinstance(m, nn.MaxPool2d) for m in big.modules()) == 3
    with pytest.raises(BuilderError, match="blocks"):
        nets.call(nets.resolve("cnn"), (1, 8, 8), 2, {"blocks": 4})


def test_table_networks_refuse_images_and_cnn_refuses_tables():
    with pytest.raises(BuilderError, match="takes table input, not images"):
        nets.call(nets.resolve("mlp"), (1, 8, 8), 10, {})
    with pytest.raises(BuilderError, match="takes image input, not tables"):
        train("breast_cancer", kit.TrainConfig(net="cnn", epochs=1))


def test_a_custom_image_builder_gets_the_input_shape(folder):
    seen = []

    def tiny(input_shape, n_out, width=4):
        seen.append(tuple(input_shape))
        c, h, w = input_shape
        return nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(width * h * w, n_out))

    nets.register("tiny_image", tiny)
    try:
        out = train(folder, kit.TrainConfig(net="tiny_image", net_params={"width": 2}, epochs=2, patience=0),
                    baselines=False)
    finally:
        nets.unregister("tiny_image")
    assert seen[0] == (1, 8, 8)
    assert out.bundle.spec["input_shape"] == [1, 8, 8] and out.bundle.spec["params"] == {"width": 2}


def test_augmentation_is_seeded_off_by_default_and_for_images_only(folder):
    from kit._train_inputs import augment

    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    flipped = augment(x, ("flip",), g)
    # Each image is itself or its mirror; shifting keeps the shape and only repeats edge values.
    assert all(torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1)) for i in range(2))
    shifted = augment(x, ("shift",), torch.Generator().manual_seed(1))
    assert shifted.shape == x.shape and set(shifted.unique().tolist()) <= set(x.unique().tolist())
    cfg = kit.TrainConfig(net="cnn", epochs=2, patience=0, augment=("flip", "shift"))
    a = train(folder, cfg, baselines=False)
    b = train(folder, cfg, baselines=False)
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    assert kit.TrainConfig().augment == ()
    with pytest.raises(ConfigError, match="augment"):
        train("breast_cancer", kit.TrainConfig(epochs=1, augment=("flip",)))


def test_static_int8_is_built_for_the_conv_net_within_one_point(result):
    from kit import quantize

    report = quantize.compare(result.bundle, repeats=5, warmup=1)
    frame = report.frame
    assert {"torch-fp32", "ort-fp32", "ort-fp16", "ort-int8-dynamic", "ort-int8-static"} <= set(frame.index)
    assert (frame["status"] == "ok").all(), frame["status"]
    # The issue's bar: static int8 (QDQ, calibrated on training images) within 1 point of fp32 accuracy.
    assert frame.loc["ort-int8-static", "metric_drop"] <= 0.01
    assert report.settings["calibration_rows"] >= 32
    chosen = quantize.select(report)
    served = quantize.attach(result.bundle, chosen)
    X = result.splits.test.X
    agree = (served.predict(X) == result.bundle.predict(X)).mean()
    assert agree >= 0.99


def test_per_pixel_shap_adds_up_plots_and_travels_with_the_bundle(result, tmp_path):
    from kit import explain

    bundle = result.bundle
    ex = explain.explain_images(bundle, rows=6, background_size=25)
    assert ex.method == "deep" and "rule for every layer" in ex.why
    assert ex.values.shape == (6, 1, 8, 8) and ex.additivity_error <= ex.tolerance
    np.testing.assert_allclose(ex.values.sum(axis=(1, 2, 3)) + ex.base_values, ex.outputs, atol=1e-4)
    assert ex.plot_overlay(3).axes and ex.plot_global().axes and ex.global_map().shape == (8, 8)
    # Stored with the bundle (safetensors, no pickle): a served model explains from it without data.
    stored = ModelBundle.load(explain.attach_images(bundle, ex).save(tmp_path / "explained"))
    assert stored.explanation is not None and stored.explanation.background_size == 25
    again = explain.explain_images(stored, ex.pixels[:2])
    np.testing.assert_allclose(again.values, ex.values[:2], atol=1e-9)
    answer = again.to_dict()
    assert np.array(answer["rows"][0]["shap"]).shape == (1, 8, 8)
    with pytest.raises(ConfigError, match="explain_images"):
        explain.explain(bundle)
    gradient = explain.explain_images(bundle, rows=2, method="gradient", background_size=10)
    assert gradient.method == "gradient" and gradient.values.shape == (2, 1, 8, 8)


def test_kit_predict_scores_a_folder_and_a_zip_offline(result, folder, tmp_path, capsys):
    import shutil
    import zipfile

    import pandas as pd

    from kit.cli import main

    bundle_dir = result.bundle.save(tmp_path / "bundle")
    subset = tmp_path / "subset"
    for path in sorted(folder.rglob("*.png"))[::60]:
        target = subset / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    files = sorted(p.relative_to(subset).as_posix() for p in subset.rglob("*.png"))
    assert main(["predict", "--bundle", str(bundle_dir), str(subset), str(tmp_path / "out.csv"), "-q"]) == 0
    out = pd.read_csv(tmp_path / "out.csv", dtype={"prediction": str})
    assert out["file"].tolist() == files
    expected = result.bundle.predict([{"image": subset / f} for f in files])
    assert out["prediction"].tolist() == list(expected)
    assert {"proba_0", "proba_9", "model_tag"} <= set(out.columns)
    # A ZIP gives the same answers; an unusable file stops the run by name, or is set aside with --on-error skip.
    archive = tmp_path / "subset.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in files:
            z.write(subset / f, f)
        z.writestr("3/broken.png", b"not a png")
    assert main(["predict", "--bundle", str(bundle_dir), str(archive), str(tmp_path / "zip.csv"), "-q"]) == 2
    assert "3/broken.png" in capsys.readouterr().err
    assert main(["predict", "--bundle", str(bundle_dir), str(archive), str(tmp_path / "zip.csv"), "-q",
                 "--on-error", "skip"]) == 0
    assert pd.read_csv(tmp_path / "zip.csv", dtype={"prediction": str})["prediction"].tolist() == list(expected)
    errors = pd.read_csv(tmp_path / "zip.errors.csv")
    assert errors["file"].tolist() == ["3/broken.png"] and "not a PNG or JPEG" in errors["error"][0]


def test_scoring_a_zip_streams_batches_with_a_counted_progress_bar(result, folder, tmp_path, capsys):
    import zipfile

    import pandas as pd

    from kit.package import predict_images

    files = sorted(folder.rglob("*.png"))[:300]
    archive = tmp_path / "some.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in files:
            z.write(path, path.relative_to(folder).as_posix())
        z.writestr("7/broken.png", b"not a png")
    (tmp_path / "out.errors.csv").write_text("stale\n")
    summary = predict_images(result.bundle, archive, tmp_path / "out.csv", batch_size=64, on_error="skip")
    # the bar counts the ZIP's files before reading them, and reaches the end
    assert "301/301" in capsys.readouterr().err
    assert (summary.scored, summary.failed) == (300, 1)
    out = pd.read_csv(tmp_path / "out.csv", dtype={"prediction": str})
    # five batches of 64 appended to one file: the same rows, in archive order, as one in-process call
    assert out["file"].tolist() == [p.relative_to(folder).as_posix() for p in files]
    assert out["prediction"].tolist() == list(result.bundle.predict([{"image": p} for p in files]))
    assert pd.read_csv(tmp_path / "out.errors.csv")["file"].tolist() == ["7/broken.png"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    # a ZIP of unusable files only: a header-only output, every file in the errors, and a clean run removes them
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as z:
        z.writestr("a.png", b"nope")
    predict_images(result.bundle, tmp_path / "bad.zip", tmp_path / "out.csv", on_error="skip", progress=False)
    assert pd.read_csv(tmp_path / "out.csv").empty and "proba_3" in pd.read_csv(tmp_path / "out.csv").columns
    with zipfile.ZipFile(tmp_path / "good.zip", "w") as z:
        z.write(files[0], "one.png")
    predict_images(result.bundle, tmp_path / "good.zip", tmp_path / "out.csv", progress=False)
    assert len(pd.read_csv(tmp_path / "out.csv")) == 1 and not (tmp_path / "out.errors.csv").exists()


def test_tuning_searches_the_cnn_parameters(folder, tmp_path):
    from kit.tune import default_space, tune

    assert {"net.width", "dropout"} <= set(default_space("cnn"))
    config = kit.TuneConfig(n_trials=2, epochs=1, storage=f"sqlite:///{tmp_path}/study.db", run_dir=str(tmp_path),
                            space={"net.width": "int(4, 8)", "lr": "float(1e-3, 3e-3, log)"})
    out = tune(folder, config, train=kit.TrainConfig(net="cnn", epochs=1, patience=0))
    assert 4 <= out.best_config.net_params["width"] <= 8
    assert out.bundle.kind == "image" and out.bundle.spec["params"]["width"] == out.best_config.net_params["width"]


def test_the_release_gate_checks_an_image_model(result):
    from kit import gate

    report = gate.check(result.bundle)
    checks = {c.name: c for c in report.checks}
    assert report.passed, report
    assert checks["missing_robustness"].skipped and "imputes nothing" in checks["missing_robustness"].reason
    assert checks["explanation_stability"].details["top_a"][0].startswith("pixel(y=")


def test_kit_explain_on_an_image_bundle_saves_the_overlay_and_the_map(result, tmp_path, capsys):
    from kit.cli import main

    bundle_dir = result.bundle.save(tmp_path / "bundle")
    out = tmp_path / "explained"
    assert main(["explain", "--bundle", str(bundle_dir), "--rows", "4", "--background-size", "20",
                 "--out", str(out)]) == 0
    assert "explained 4 test images" in capsys.readouterr().out
    assert (out / "plots" / "shap_overlay.png").stat().st_size > 0 and (out / "plots" / "shap_global_map.png").exists()
    assert ModelBundle.load(out).explanation.background_size == 20


def test_the_data_panel_loads_an_image_folder_and_draws_a_sample_grid(folder, tmp_path):
    from kit.data import ImageDataset
    from kit.ui import DataPanel, Session

    session = Session(output_dir=tmp_path, smoke=True)
    panel = DataPanel(session)
    assert "digits_images" in panel.source.options
    panel.source.value = panel.source.options[-1]  # a path: the folder
    panel.path.value = str(folder)
    panel.button.click()
    assert panel.job.wait(120)
    assert isinstance(session.dataset, ImageDataset) and "1797 rows" in panel.table.value
    assert panel.plot.value  # the grid of samples with their labels


def test_kit_train_on_a_folder_with_augmentation(folder, tmp_path):
    from kit.cli import main
    from kit.ui.train_view import cli_command

    out = tmp_path / "cli"
    assert main(["train", "--data", str(folder), "--net", "cnn", "--epochs", "1", "--patience", "0",
                 "--augment", "flip,shift", "--no-baselines", "--out", str(out), "-q"]) == 0
    bundle = ModelBundle.load(out)
    assert bundle.kind == "image" and bundle.configs["train"]["augment"] == ["flip", "shift"]
    # The wizard's command-line twin says the same.
    assert "--augment flip,shift" in cli_command(kit.TrainConfig(net="cnn", augment=("flip", "shift")))
