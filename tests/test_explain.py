"""kit.explain: SHAP values in the original feature space, additivity, fallbacks, storage, CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kit
from kit.bundle import ModelBundle
from kit.cli import main
from kit.errors import ConfigError, SchemaError
from kit.explain import BACKGROUND_ARTIFACT, Explanation, attach, explain, make_background
from kit.runtime import Runtime
from kit.train import TrainResult, train


def _outputs(bundle: ModelBundle, ex: Explanation) -> np.ndarray:
    """The explained output recomputed independently from the public predict path."""
    if bundle.task == "regression":
        return bundle.predict(ex.data)
    logp = np.log(bundle.predict_proba(ex.data))
    cls = np.array([bundle.label_names.index(t) for t in ex.target])  # type: ignore[union-attr]
    rows = np.arange(len(cls))
    if logp.shape[1] == 2:
        return logp[rows, cls] - logp[rows, 1 - cls]
    return logp[rows, cls] - logp.mean(axis=1)


@pytest.mark.parametrize("fixture", ["bc_result", "wine_result", "diabetes_result"])
def test_auto_is_deep_and_additive(fixture: str, request: pytest.FixtureRequest) -> None:
    result: TrainResult = request.getfixturevalue(fixture)
    bundle, splits = result.bundle, result.splits
    X = splits.test.X.iloc[:40]
    ex = explain(bundle, X, background=splits.train.X, background_size=50)
    assert ex.method == "deep", ex.why
    assert ex.values.shape == (len(X), len(bundle.feature_names))
    scale = bundle.target_scaling["std"] if bundle.task == "regression" else 1.0  # type: ignore[index]
    assert ex.additivity_error <= 1e-4 * scale
    # values + base add up to the model output recomputed through bundle.predict/predict_proba
    np.testing.assert_allclose(ex.values.sum(axis=1) + ex.base_values, _outputs(bundle, ex), atol=1e-4 * scale)


def test_classification_targets(bc_result: TrainResult, wine_result: TrainResult) -> None:
    bc = explain(bc_result.bundle, bc_result.splits.test.X.iloc[:5], background=bc_result.splits.train.X,
                 background_size=20)
    assert bc.target == ["benign"] * 5  # binary default: the positive (second) class
    assert bc.output == "log-odds of class 'benign'"
    neg = explain(bc_result.bundle, bc_result.splits.test.X.iloc[:5], background=bc_result.splits.train.X,
                  background_size=20, target="malignant")
    # log-odds of the other class is the exact negative
    np.testing.assert_allclose(neg.values, -bc.values, atol=1e-9)

    wine, X = wine_result.bundle, wine_result.splits.test.X.iloc[:20]
    ex = explain(wine, X, background=wine_result.splits.train.X, background_size=30)
    assert ex.target == list(wine.predict(X))  # multiclass default: each row's predicted class
    one = explain(wine, X, background=wine_result.splits.train.X, background_size=30, target="class_2")
    assert one.target == ["class_2"] * 20 and one.additivity_error < 1e-4
    with pytest.raises(ConfigError, match="not one of the classes"):
        explain(wine, X, background=wine_result.splits.train.X, target="class_9")


def test_probability_output_is_measured_against_probabilities(bc_result: TrainResult) -> None:
    bundle, splits = bc_result.bundle, bc_result.splits
    X = splits.test.X.iloc[:4]
    ex = explain(bundle, X, background=splits.train.X, background_size=10, output="probability")
    assert ex.output == "probability of class 'benign'"
    assert ex.additivity_error <= 1e-4
    np.testing.assert_allclose(ex.values.sum(axis=1) + ex.base_values, bundle.predict_proba(X)[:, 1], atol=1e-4)


def test_one_hot_folding_keeps_additivity_and_original_values(mixed_result: TrainResult) -> None:
    bundle, splits = mixed_result.bundle, mixed_result.splits
    X = splits.test.X.iloc[:30]
    ex = explain(bundle, X, background=splits.train.X, background_size=40)
    assert ex.method == "deep"
    assert ex.feature_names == ["size", "color", "weight"]  # one column per source feature, not per category
    assert len(bundle.preprocessor.output_names_) > 3
    assert ex.additivity_error <= 1e-4
    np.testing.assert_allclose(ex.values.sum(axis=1) + ex.base_values, _outputs(bundle, ex), atol=1e-4)
    # data shows the raw rows: unscaled numbers, category names, missing kept missing
    pd.testing.assert_series_equal(ex.data["size"], X["size"].reset_index(drop=True), check_dtype=False)
    assert set(ex.data["color"].dropna()) <= {"red", "green", "blue"}
    # the model-agnostic engine masks whole features in raw space; it agrees in sign on color's effect
    perm = explain(bundle, X, background=splits.train.X, background_size=40, method="permutation")
    assert perm.additivity_error <= 1e-4
    assert np.corrcoef(perm.values[:, 1], ex.values[:, 1])[0, 1] > 0.9


def test_seed_determinism(mixed_result: TrainResult) -> None:
    bundle, splits = mixed_result.bundle, mixed_result.splits
    X = splits.test.X.iloc[:5]

    def run(seed: int) -> Explanation:
        return explain(bundle, X, background=splits.train.X, background_size=15, method="permutation",
                       seed=seed, nsamples=70)

    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a.values, b.values)
    pd.testing.assert_frame_equal(a.background, b.background)
    # another seed draws another background, so other values
    assert not a.background.equals(c.background)
    assert not np.allclose(a.values, c.values)


def test_deep_and_kernel_agree_on_small_model() -> None:
    result = train("diabetes", kit.TrainConfig(hidden=(16,), epochs=30, patience=0, dropout=0.0, seed=0))
    bundle, splits = result.bundle, result.splits
    X = splits.test.X.iloc[:8]
    deep = explain(bundle, X, background=splits.train.X, background_size=20, method="deep")
    # 10 features: 1024 coalitions, so Kernel SHAP enumerates them all (exact Shapley values)
    kern = explain(bundle, X, background=splits.train.X, background_size=20, method="kernel", nsamples=1024)
    pd.testing.assert_frame_equal(deep.background, kern.background)
    np.testing.assert_allclose(deep.base_values, kern.base_values, rtol=1e-4)
    assert np.corrcoef(deep.values.ravel(), kern.values.ravel())[0, 1] > 0.98
    assert np.abs(deep.values - kern.values).sum() / np.abs(kern.values).sum() < 0.2
    assert deep.importance()["feature"].iloc[0] == kern.importance()["feature"].iloc[0]
    # permutation sampling converges to the same exact values
    perm = explain(bundle, X, background=splits.train.X, background_size=20, method="permutation", nsamples=2100)
    assert np.abs(perm.values - kern.values).sum() / np.abs(kern.values).sum() < 0.05


def test_batched_deeplift_equals_shap_deep_explainer(bc_result: TrainResult) -> None:
    import shap
    import torch

    from kit.explain import _engines as engines

    bundle, splits = bc_result.bundle, bc_result.splits
    bg = make_background(bundle, splits.train.X, size=25)
    ctx = engines.context(bundle, bg, "test-batched")
    model = ctx.network("logit", 1, "float64")
    x = torch.from_numpy(bundle.transform(splits.test.X.iloc[:3]).astype(np.float64))
    bgt = torch.from_numpy(ctx.bg_net)
    explainer = shap.DeepExplainer(model, bgt)
    reference = np.asarray(explainer.shap_values(x, check_additivity=False)).reshape(3, -1)
    np.testing.assert_allclose(engines.deeplift(explainer, model, x, bgt, chunk_pairs=30), reference, atol=1e-10)


def test_unsupported_layer_falls_back_and_says_why() -> None:
    result = train("wine", kit.TrainConfig(norm="layer", hidden=(16,), epochs=5, patience=0, seed=0))
    bundle, splits = result.bundle, result.splits
    X = splits.test.X.iloc[:3]
    ex = explain(bundle, X, background=splits.train.X, background_size=10, nsamples=60)
    assert ex.method in ("gradient", "permutation")
    assert "deep: skipped, DeepExplainer has no rule for LayerNorm" in ex.why
    assert ex.additivity_error <= 1e-4
    # forcing deep on that network is refused, naming the layer
    with pytest.raises(ConfigError, match="LayerNorm"):
        explain(bundle, X, background=splits.train.X, method="deep")


def test_operations_called_in_forward_without_a_rule_are_named() -> None:
    # ft_transformer's attention calls matmul and softmax in forward: no nn layer, so no DeepLIFT
    # rule; the chain says which operations and ends in exactly additive permutation sampling.
    result = train("wine", kit.TrainConfig(net="ft_transformer", epochs=3, patience=0, seed=0), baselines=False)
    bundle, splits = result.bundle, result.splits
    ex = explain(bundle, splits.test.X.iloc[:3], background=splits.train.X, background_size=10, nsamples=60)
    assert ex.method == "permutation" and ex.additivity_error <= 1e-4
    assert ("deep: skipped, DeepExplainer has no rule for LayerNorm, matmul (called in forward), mul (called in "
            "forward), relu (called in forward), softmax (called in forward)") in ex.why
    assert "gradient: failed the additivity check" in ex.why


def test_custom_network_with_rules_for_every_layer_uses_deeplift() -> None:
    # tests/custom_net.py: Linear, BatchNorm1d, ReLU, Dropout and additions, all with rules
    result = train("wine", kit.TrainConfig(net="custom_net:build", net_params={"width": 16}, epochs=5, patience=0),
                   baselines=False)
    bundle, splits = result.bundle, result.splits
    ex = explain(bundle, splits.test.X.iloc[:5], background=splits.train.X, background_size=20)
    assert ex.method == "deep" and ex.additivity_error <= 1e-4


def test_failed_additivity_check_falls_back(bc_result: TrainResult) -> None:
    bundle, splits = bc_result.bundle, bc_result.splits
    # a zero tolerance: deep and gradient (float32/float64 sums of many terms) miss it, each recorded;
    # permutation sampling is additive by construction and is kept, with a warning if rounding shows
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex = explain(bundle, splits.test.X.iloc[:2], background=splits.train.X, background_size=5, tolerance=0.0,
                     nsamples=70)
    assert ex.method == "permutation"
    assert "deep: failed the additivity check" in ex.why and "gradient: failed the additivity check" in ex.why
    warned = [w for w in caught if "do not add up" in str(w.message)]
    assert (ex.additivity_error > 0) == bool(warned) and ex.additivity_error < 1e-12


class Int8Runtime(Runtime):
    """A non-torch runtime: numpy MLP with weights rounded to int8 (per tensor), as a quantized model."""

    name = "numpy-int8"

    def __init__(self, bundle: ModelBundle) -> None:
        def q(w: np.ndarray) -> np.ndarray:
            scale = np.abs(w).max() / 127
            return (np.round(w / scale).clip(-127, 127) * scale).astype(np.float32)

        # kit's mlp without norm layers: Linear layers ("deep.0.weight", "deep.3.weight", ...) and the
        # linear shortcut from input to output ("linear.weight")
        keys = sorted({k.rsplit(".", 1)[0] for k in bundle.weights if k.startswith("deep.")},
                      key=lambda k: int(k.split(".")[1]))
        self.layers = [(q(bundle.weights[f"{k}.weight"]), bundle.weights[f"{k}.bias"]) for k in keys]
        self.shortcut = (q(bundle.weights["linear.weight"]), bundle.weights["linear.bias"])

    def run(self, x: np.ndarray) -> np.ndarray:
        h = x
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i + 1 < len(self.layers):
                h = np.maximum(h, 0)
        w, b = self.shortcut
        return (h + x @ w.T + b).astype(np.float32)


def test_model_agnostic_explains_a_non_torch_runtime(bc_result: TrainResult) -> None:
    bundle = bc_result.bundle.copy().set_runtime(Int8Runtime(bc_result.bundle))
    splits = bc_result.splits
    X = splits.test.X.iloc[:4]
    # the int8 model predicts differently from the fp32 one, so we really explain another model
    assert not np.allclose(bundle.predict_proba(X), bc_result.bundle.predict_proba(X), atol=1e-7)
    ex = explain(bundle, X, background=splits.train.X, background_size=10, nsamples=70)
    assert ex.method == "permutation"
    assert "is not torch" in ex.why
    np.testing.assert_allclose(ex.values.sum(axis=1) + ex.base_values, _outputs(bundle, ex), atol=1e-6)
    with pytest.raises(ConfigError, match="runs on Int8Runtime"):
        explain(bundle, X, background=splits.train.X, method="deep")


def test_bad_input(bc_result: TrainResult) -> None:
    bundle, splits = bc_result.bundle, bc_result.splits
    bg = splits.train.X
    with pytest.raises(SchemaError, match="missing column 'mean radius'") as info:
        explain(bundle, splits.test.X.drop(columns=["mean radius"]), background=bg)
    assert info.value.field == "mean radius"
    bad = splits.test.X.iloc[:3].astype(object)
    bad.iloc[2, 0] = "big"
    with pytest.raises(SchemaError, match="row 2") as info:
        explain(bundle, bad, background=bg)
    assert info.value.row == 2
    with pytest.raises(SchemaError, match="empty"):
        explain(bundle, splits.test.X.iloc[:0], background=bg)
    with pytest.raises(SchemaError, match="empty"):
        explain(bundle, [], background=bg)
    with pytest.raises(ConfigError, match="method"):
        explain(bundle, splits.test.X.iloc[:2], background=bg, method="lime")
    with pytest.raises(SchemaError, match="background"):
        explain(bundle, splits.test.X.iloc[:2], background=bg.iloc[:0])


def test_a_fresh_bundle_explains_against_a_seeded_sample_of_its_own_training_split(bc_result: TrainResult) -> None:
    bundle, splits = bc_result.bundle, bc_result.splits
    assert bundle.explanation is None  # nothing stored: the background comes from reload_data()
    ex = explain(bundle, splits.test.X.iloc[:5], background_size=30, seed=3)
    same = explain(bundle, splits.test.X.iloc[:5], background=splits.train.X, background_size=30, seed=3)
    assert ex.background_kind == "sample" and len(ex.background) == 30
    pd.testing.assert_frame_equal(ex.background, same.background)
    np.testing.assert_allclose(ex.values, same.values)
    # with no rows either, the first rows of its own test split are explained
    default = explain(bundle, background_size=30, rows=7)
    pd.testing.assert_frame_equal(default.data, splits.test.X.iloc[:7].reset_index(drop=True), check_dtype=False)


def test_permutation_values_add_up_on_a_batch_dependent_int8_runtime(bc_result: TrainResult) -> None:
    from kit.quantize import attach

    # dynamic int8 quantizes activations with ranges taken from the whole batch, so a row's output
    # moves with its batch neighbours; the values must still add up, to the output the engine observed
    bundle = attach(bc_result.bundle, "ort-int8-dynamic")
    X = bc_result.splits.test.X.iloc[:6]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "do not add up" warning
        ex = explain(bundle, X, background=bc_result.splits.train.X, background_size=40)
    assert ex.method == "permutation"
    np.testing.assert_allclose(ex.values.sum(axis=1) + ex.base_values, ex.outputs, atol=1e-9)
    assert ex.additivity_error <= ex.tolerance
    served = _outputs(bundle, ex)
    shift = float(np.max(np.abs(served - ex.outputs)))
    # where the batch moved the output beyond the tolerance, the explanation says so
    assert ("depends on the rest of its batch" in ex.why) == (shift > ex.tolerance)


def test_oversized_input_is_sampled_with_a_warning(bc_result: TrainResult) -> None:
    bundle, splits = bc_result.bundle, bc_result.splits
    X = splits.train.X  # several hundred rows
    with pytest.warns(UserWarning, match=f"{len(X)} rows, more than max_rows=50; explaining a seeded random sample "
                                         "of 50 rows"):
        ex = explain(bundle, X, background=splits.train.X, background_size=10, max_rows=50)
    assert len(ex.values) == 50 and len(set(ex.row_index)) == 50
    # each explained row is the input row its row_index points to
    pd.testing.assert_frame_equal(ex.data, X.iloc[ex.row_index].reset_index(drop=True), check_dtype=False)


def test_kmeans_background_keeps_real_rows(mixed_result: TrainResult) -> None:
    bundle, train_X = mixed_result.bundle, mixed_result.splits.train.X
    bg = make_background(bundle, train_X, size=12, kind="kmeans", seed=0)
    assert 1 <= len(bg) <= 12
    # every background row is a training row (k-medoid style), so every engine can use it
    merged = bg.astype(str).merge(train_X.astype(str).drop_duplicates(), how="left", indicator=True)
    assert (merged["_merge"] == "both").all()
    ex = explain(bundle, train_X.iloc[:5], background=train_X, background_size=12, background_kind="kmeans")
    assert ex.background_kind == "kmeans" and ex.additivity_error <= 1e-4


def test_attach_stores_background_and_ranking(mixed_result: TrainResult, tmp_path: Path) -> None:
    bundle, splits = mixed_result.bundle, mixed_result.splits
    X = splits.test.X.iloc[:10]
    ex = explain(bundle, X, background=splits.train.X, background_size=30)
    stored = attach(bundle, ex)
    assert BACKGROUND_ARTIFACT not in bundle.artifacts  # attach returns a copy
    section = stored.sections["explanation"]
    assert section["method"] == "deep" and section["background_size"] == 30
    assert [r["feature"] for r in section["importance"]] == list(ex.importance()["feature"])
    loaded = ModelBundle.load(stored.save(tmp_path / "b"))
    doc = json.loads(loaded.artifacts[BACKGROUND_ARTIFACT])
    assert len(doc["rows"]) == 30 and doc["columns"] == ["size", "color", "weight"]
    # with the stored background, explain needs no background and gives the same values
    again = explain(loaded, X)
    assert again.background_kind == "stored"
    np.testing.assert_allclose(again.values, ex.values, atol=1e-9)
    # the service path: a few records, bad records refused with the column named
    records = X.iloc[:2].to_dict("records")
    assert explain(loaded, records).values.shape == (2, 3)
    with pytest.raises(SchemaError, match="unseen category 'purple'") as info:
        explain(loaded, [{**records[0], "color": "purple"}])
    assert info.value.field == "color"


def test_plots_are_figures(bc_result: TrainResult, tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    bundle, splits = bc_result.bundle, bc_result.splits
    ex = explain(bundle, splits.test.X.iloc[:30], background=splits.train.X, background_size=20)
    figures = [ex.plot_bar(), ex.plot_beeswarm(), ex.plot_waterfall(3), ex.plot_dependence("worst radius")]
    for i, fig in enumerate(figures):
        assert isinstance(fig, Figure)
        fig.savefig(tmp_path / f"{i}.png")
        assert (tmp_path / f"{i}.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="unknown feature"):
        ex.plot_dependence("nope")
    assert ex.to_shap().values.shape == ex.values.shape


def test_plots_with_categorical(mixed_result: TrainResult) -> None:
    ex = explain(mixed_result.bundle, mixed_result.splits.test.X.iloc[:20], background=mixed_result.splits.train.X,
                 background_size=20)
    fig = ex.plot_dependence("color")
    # categories are named on the x axis
    assert {t.get_text() for t in fig.axes[0].get_xticklabels()} >= {"blue", "red"}
    assert ex.plot_beeswarm() is not None and ex.plot_waterfall(0) is not None


def test_cli(bc_bundle: ModelBundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = bc_bundle.save(tmp_path / "bc")
    out = tmp_path / "explained"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CLI path raises no warnings
        code = main(["explain", "--bundle", str(src), "--rows", "15", "--background-size", "20", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "deep" in printed and "mean_abs_shap" in printed and "worst" in printed
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "shap_bar.png", "shap_beeswarm.png", "shap_dependence.png", "shap_waterfall.png"]
    loaded = ModelBundle.load(out)
    assert loaded.sections["explanation"]["rows_explained"] == 15
    assert BACKGROUND_ARTIFACT in loaded.artifacts
    assert main(["explain", "--bundle", str(tmp_path / "missing")]) == 2
    assert "is not a kit bundle" in capsys.readouterr().err
