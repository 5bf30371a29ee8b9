"""Panels driven like a user would: Button.click() and value changes, then the session's state.

Clicks run the step in a background thread (as in JupyterLab); each test waits for the job.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kit
from kit.bundle import ModelBundle
from kit.ui import DataPanel, ExplainPanel, QuantizePanel, Session, TrainPanel, TunePanel, Wizard
from kit.ui.gate_panel import GatePanel
from kit.ui.package_panel import PackagePanel, compare
from kit.ui.train_panel import NET_FIELDS

WAIT = 240


def click(panel, button=None) -> None:
    (button or panel.button).click()
    assert panel.job.wait(WAIT), f"{panel.title} still running after {WAIT}s"


def cli_twin(train_panel: TrainPanel, out: Path, *extra: str) -> tuple[list[str], ModelBundle]:
    """Run the `kit train` command the Train panel prints (writing to ``out``): its arguments and its bundle."""
    import html
    import shlex

    from kit.cli import main

    command = html.unescape(train_panel.command.value.split("<code>")[1].split("</code>")[0])
    argv = shlex.split(command)[1:]
    argv[argv.index("--out") + 1] = str(out)
    assert main([*argv, *extra]) == 0
    return argv, ModelBundle.load(out)


@pytest.fixture()
def session(tmp_path: Path) -> Session:
    return Session(output_dir=tmp_path, smoke=True)


@pytest.fixture()
def trained(tmp_path: Path, bc_bundle: ModelBundle) -> Session:
    """A session holding breast_cancer data and the shared trained bundle."""
    s = Session(output_dir=tmp_path, smoke=True)
    s.load_data(kit.DataConfig())
    s.set_bundle(bc_bundle, "train")
    return s


def test_wizard_has_one_tab_per_step_over_one_session(tmp_path: Path):
    wizard = Wizard(output_dir=tmp_path, smoke=True)
    assert wizard.missing == []
    assert [wizard.tabs.get_title(i) for i in range(7)] == [
        "1. Data", "2. Train", "3. Tune", "4. Explain", "5. Quantize", "6. Gate", "7. Package & serve"]
    assert all(p.session is wizard.session for p in wizard.panels.values())


def test_data_panel_loads_the_chosen_builtin_and_shows_its_summary(session: Session):
    panel = DataPanel(session)
    panel.source.value = "wine"
    panel.test_size.value = 0.2
    click(panel)
    assert session.dataset is not None and session.dataset.name == "wine" and session.dataset.task == "multiclass"
    assert session.data_config.test_size == 0.2 and len(session.splits.test) == 36  # 20% of 178 rows
    assert "178 rows" in panel.table.value and panel.plot.value  # summary and class-balance plot


def test_data_panel_upload_then_target_then_load(session: Session, mixed_csv: Path):
    panel = DataPanel(session)
    content = mixed_csv.read_bytes()
    panel.upload.value = ({"name": "mixed.csv", "type": "text/csv", "size": len(content),
                           "content": memoryview(content),
                           "last_modified": dt.datetime.now(dt.UTC)},)
    # The upload is saved beside the session's outputs and the path box points at it.
    assert Path(panel.path.value) == session.output_dir / "uploads" / "mixed.csv"
    panel.target.value = "label"
    click(panel)
    assert session.dataset.target == "label" and session.dataset.task == "binary"


def test_data_panel_bad_input_is_one_clear_status_line(session: Session):
    panel = DataPanel(session)
    panel.source.value = "(file path or upload)"
    panel.path.value = "no/such/file.csv"
    click(panel)
    assert "no such file" in panel.status.value and session.dataset is None
    assert not panel.button.disabled  # ready for another try


def test_train_panel_trains_with_the_controls_and_plots_live(session: Session):
    session.load_data()
    panel = TrainPanel(session)
    panel.epochs.value, panel.net.fields["hidden"].value, panel.lr.value = 6, "32,16", 0.01
    click(panel)
    result = session.result
    assert result is not None and session.bundle is result.bundle
    assert session.train_config.hidden == (32, 16) and len(result.history) == 6
    assert panel.progress.value == 6 and bytes(panel.plot.value).startswith(b"\x89PNG")
    assert "accuracy" in panel.table.value and (session.output_dir / "bundles" / "train").is_dir()
    # The network is shown next to the baselines fitted on the same split.
    assert "Baselines on the same split" in panel.table.value and "hist_gradient_boosting" in panel.table.value
    assert session.outputs["train"]["baselines"]["models"].keys() == {"logistic", "hist_gradient_boosting"}


def test_network_picker_lists_builders_and_shows_their_parameters(session: Session):
    from kit import nets

    session.load_data(kit.DataConfig(source="wine"))
    nets.register("picker_net", "custom_net:build")
    try:
        panel = TrainPanel(session)
        picker = panel.net
        assert list(picker.choice.options)[:3] == ["mlp", "resmlp", "ft_transformer"]
        assert "picker_net" in picker.choice.options  # registered before the panel was made
        assert set(picker.fields) == {"hidden", "dropout", "activation", "norm", "skip"}
        assert picker.fields["hidden"].value == "128,64" and picker.fields["dropout"].value == 0.3
        picker.choice.value = "resmlp"
        assert {"width", "blocks", "norm"} <= set(picker.fields) and picker.fields["norm"].value == "batch"
        picker.fields["width"].value, picker.fields["dropout"].value = 32, 0.2
        panel.epochs.value = 3
        click(panel)
        config = session.train_config
        # Only what differs from the builder's defaults is set; dropout is the shorthand field.
        assert (config.net, config.net_params, config.dropout, config.hidden) == ("resmlp", {"width": 32}, 0.2, None)
        assert session.result.bundle.net.builder == "resmlp"
        # An import path typed in; an unknown builder is reported in the picker, naming it.
        picker.choice.value = "custom_net:build"
        assert set(picker.fields) == {"width", "blocks", "dropout"} and "custom_net:build" in picker.status.value
        picker.choice.value = "nowhere_net:build"
        assert "cannot be imported" in picker.status.value and picker.fields == {}
        click(panel)
        assert "nowhere_net" in panel.status.value and session.result.bundle.net.builder == "resmlp"
    finally:
        nets.unregister("picker_net")


def test_train_panel_stop_button_ends_training_early(session: Session):
    session.load_data()
    panel = TrainPanel(session)
    panel.epochs.value, panel.patience.value = 2000, 0
    panel.button.click()
    deadline = time.monotonic() + WAIT
    while panel.progress.value < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    panel.stop_button.click()
    assert panel.job.wait(WAIT)
    # The loop saw the cancel flag through its callback and kept the best weights so far.
    assert session.result.stopped == "callback" and len(session.result.history) < 2000
    assert "stopped by you" in panel.status.value and "stopped by you" in panel.table.value


def test_train_panel_refuses_malformed_widths(session: Session):
    session.load_data()
    panel = TrainPanel(session)
    panel.net.fields["hidden"].value = "64,x"
    click(panel)
    assert "hidden must be integers separated by commas" in panel.status.value and session.result is None


def test_tune_panel_runs_trials_and_use_best_updates_train(session: Session):
    session.load_data()
    train_panel, panel = TrainPanel(session), TunePanel(session)
    panel.n_trials.value, panel.trial_epochs.value, panel.pruner.value = 2, 3, "none"
    click(panel)
    assert [r["state"] for r in panel.trials] == ["COMPLETE", "COMPLETE"]
    assert (session.output_dir / "tune" / "optuna.db").exists() and panel.plot.value
    assert not panel.use_best.disabled and panel.progress.value == 2
    assert "the best config retrained: <b>test accuracy" in panel.table.value
    panel.use_best.click()
    best = panel.result.best_config
    assert session.train_config == best and session.bundle is panel.result.bundle
    # The Train panel's controls hold the tuned config exactly: no slider rounds lr or dropout, and the
    # network picker shows the tuned widths and dropout.
    assert train_panel.config() == best
    assert train_panel.lr.value == best.lr and train_panel.weight_decay.value == best.weight_decay
    assert train_panel.label_smoothing.value == best.label_smoothing and train_panel.epochs.value == best.epochs == 3
    assert train_panel.net.fields["dropout"].value == best.dropout
    assert train_panel.net.fields["hidden"].value == ",".join(map(str, best.hidden))


def test_a_tuned_network_comes_back_into_the_picker_and_its_cli_twin(session: Session, tmp_path: Path):
    """Tuned net.* parameters (resmlp's width and blocks) fill the picker's fields; the CLI line trains the same."""
    import html as html_lib

    session.load_data()
    session.train_config = kit.TrainConfig(net="resmlp", seed=3)
    train_panel, tune_panel = TrainPanel(session), TunePanel(session)
    tune_panel.n_trials.value, tune_panel.trial_epochs.value, tune_panel.pruner.value = 2, 3, "none"
    click(tune_panel)
    tune_panel.use_best.click()
    tuned, best = tune_panel.result.bundle, tune_panel.result.best_config
    assert best.net == "resmlp" and {"width", "blocks"} <= set(best.net_params) and best.dropout is not None
    picker = train_panel.net
    assert picker.choice.value == "resmlp"
    assert picker.fields["width"].value == best.net_params["width"]
    assert picker.fields["blocks"].value == best.net_params["blocks"]
    assert picker.fields["dropout"].value == best.dropout
    # Exactly the tuned config, each parameter where the tuner put it (net_params or the shorthand field).
    assert train_panel.config() == best and "controls differ" not in train_panel.table.value
    assert f"network <code>{html_lib.escape(tuned.net.describe())}</code>" in train_panel.table.value
    argv, cli = cli_twin(train_panel, tmp_path / "cli-bundle", "--quiet", "--no-baselines")
    assert argv[argv.index("--net") + 1] == "resmlp" and "--net-params" in argv
    assert cli.configs["train"] == tuned.configs["train"] and cli.net.params == tuned.net.params
    assert cli.metrics == tuned.metrics
    # A field changed in the picker is a difference from the current model, named in the table.
    picker.fields["width"].value = best.net_params["width"] + 1
    train_panel.render()
    assert "the controls differ" in train_panel.table.value and "<code>net_params</code>" in train_panel.table.value
    # What no control holds is listed when set in code, and nothing is listed when it is not.
    assert train_panel.fixed.value == ""
    session.train_config = best.replace(extra={"note": "set in code"})
    session.notify("train_config")
    assert "extra=" in train_panel.fixed.value and "set in code" in train_panel.fixed.value
    assert train_panel.config() == session.train_config


def test_explain_panel_importance_and_row_picker(trained: Session):
    panel = ExplainPanel(trained)
    panel.rows.value, panel.background_size.value = 12, 30
    click(panel)
    ex = trained.objects["explain"]
    assert len(ex.values) == 12 and panel.row.max == 11 and len(panel.plot.value) > 0
    first = bytes(panel.row_plot.value)
    panel.row.value = 5
    assert panel.row_info.value.startswith("row 5:") and bytes(panel.row_plot.value) != first
    # The explanation travels with the model (background + ranking in the bundle).
    assert "explanation" in trained.bundle.sections


def test_quantize_panel_budget_slider_reselects_and_sets_the_bundle(trained: Session):
    panel = QuantizePanel(trained)
    panel.variants.value = ("torch-fp32", "ort-fp32", "ort-int8-dynamic")
    panel.repeats.value = 5
    click(panel)
    assert panel.report is not None and set(panel.report.frame.index) == set(panel.variants.value)
    assert panel.selection.variant in panel.choice.value and panel.plot.value
    panel.budget.value = 0.0
    variant = panel.selection.variant
    # The session's bundle is always the chosen variant of the fp32 source.
    assert trained.bundle.runtime_info["name"] == ("torch" if variant == "torch-fp32" else "onnxruntime")
    assert trained.outputs["quantize"]["budget"] == 0.0


def test_quantize_panel_searches_smaller_networks_with_progress_and_stop(trained: Session):
    """#17: the "search smaller networks" option runs kit.quantize.compress; Stop keeps what was built."""
    panel = QuantizePanel(trained)
    view = panel.compress
    assert view.widget.layout.display == "none"
    panel.search.value = True
    assert view.widget.layout.display is None
    view.sparsities.value, view.students.value, view.budget.value = "0.5", "[8]", 0.01
    click(view)
    result = view.result
    assert result is not None and "chosen:" in view.table.value and view.plot.value
    assert view.stages[0].startswith("reading") and any(s.startswith("prune 50%") for s in view.stages)
    assert trained.outputs["compress"]["chosen"] == result.report.chosen
    assert trained.outputs["compress"]["budget"] == 0.01
    if result.bundle is not trained.objects["compress"].report.networks["original"]:
        assert trained.bundle.sections["compression"]["chosen"] == result.report.chosen
    assert "Search smaller networks" in panel.static_html()
    # Stop at once: the search ends early, what was built is measured, the panel says so
    view.sparsities.value = "0.5, 0.9"
    job = view.start()
    view.stop()
    assert job.wait(WAIT)
    assert view.result is not None and view.result is not result and "stopped by you" in view.status.value
    assert any("stopped" in s for s in view.result.report.skipped)
    # a bad field is named, nothing runs
    view.students.value = "[8"
    click(view)
    assert "[field=students]" in view.status.value


PACKAGE_SCRIPT = """
import sys
import kit
from kit.bundle import ModelBundle
from kit.ui import PackagePanel, Session, TrainPanel

def wait(p, what, limit=240):
    assert p.job.wait(limit), what
    assert p.job.error is None, (what, p.status.value)

s = Session(output_dir=sys.argv[2], smoke=True)
s.load_data(kit.DataConfig())
s.set_bundle(ModelBundle.load(sys.argv[1]), "train")
p, t = PackagePanel(s), TrainPanel(s)
p.name.value = "ui-test"
p.button.click(); wait(p, "save")
p.start_button.click(); wait(p, "start")
p.request_button.click(); wait(p, "request")
out = s.outputs["package"]
first = s.tags["model"]
print("TAG", first, "MATCH", out["matches_notebook"], "N", len(out["response"]), "DIFF", out["max_difference"])
# Retrain with another seed: the stored tag is dropped; the old server is named as stale.
t.epochs.value, t.seed.value = 4, 11
t.button.click(); wait(t, "train")
print("STALE", "model" not in s.tags, "previous model" in p.table.value)
p.request_button.click(); wait(p, "request-stale")
print("STALE_MATCH", s.outputs["package"]["matches_notebook"], s.outputs["package"]["served_tag"] == first)
# Start server stores the current model first and serves it; the check compares tag and probabilities.
p.start_button.click(); wait(p, "restart")
p.request_button.click(); wait(p, "request2")
out = s.outputs["package"]
print("RETAG", s.tags["model"] != first, out["served_tag"] == s.tags["model"], "MATCH2", out["matches_notebook"],
      "TOL", out["max_difference"] <= out["tolerance"])
p.stop_server.click()
print("STOPPED", p.server is None)
"""


def test_package_panel_serves_the_current_model_after_a_retrain(tmp_path: Path, bc_bundle: ModelBundle):
    """In a subprocess: the BentoML store location is fixed when bentoml is imported."""
    path = bc_bundle.save(tmp_path / "bundle")
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")}
    out = subprocess.run([sys.executable, "-c", PACKAGE_SCRIPT, str(path), str(tmp_path / "out")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("TAG"))
    tag = line.split()[1]
    # The served answer for three test rows equals the notebook's (tag and probabilities), and the
    # server is gone after Stop.
    assert "MATCH True" in line and "N 3" in line and "STOPPED True" in out.stdout
    # After a retrain the old server is a previous model: its answer no longer counts as a match, and
    # Start server stores and serves the current model, which matches again.
    assert "STALE True True" in out.stdout and "STALE_MATCH False True" in out.stdout
    assert "RETAG True True MATCH2 True TOL True" in out.stdout
    assert (tmp_path / "bentoml" / "models" / tag.replace(":", "/") / "model.yaml").is_file()


def test_train_tab_after_use_best_shows_only_the_tuned_run_and_its_cli_twin(session: Session, tmp_path: Path):
    """Item 3: after "Use best parameters" the Train tab shows the tuned model's run, not the previous one."""
    session.load_data()
    train_panel, tune_panel = TrainPanel(session), TunePanel(session)
    train_panel.epochs.value = 5
    click(train_panel)
    first = session.bundle
    tune_panel.n_trials.value, tune_panel.trial_epochs.value, tune_panel.pruner.value = 2, 4, "none"
    click(tune_panel)
    tune_panel.use_best.click()
    tuned = tune_panel.result.bundle
    # One run in one view: the table names the tuned trial, its own epochs and metric; the plot is its history.
    assert session.bundle is tuned and session.result is None
    assert f"retrained from trial {tune_panel.result.best_trial}" in train_panel.table.value
    assert f"best epoch {tuned.lineage['best_epoch']} of {tuned.lineage['epochs_run']}" in train_panel.table.value
    assert train_panel.history() == tuned.history != first.history
    assert "controls differ" not in train_panel.table.value
    # Every TrainConfig field is either a control or listed; none is silently different.
    shown = set(train_panel.fields()) | set(NET_FIELDS) | {"extra"}
    assert shown == set(kit.TrainConfig().to_dict())
    # The CLI command the panel prints trains exactly the tuned config, to the same metrics.
    _, cli = cli_twin(train_panel, tmp_path / "cli-bundle", "--quiet")
    assert cli.configs["train"] == tuned.configs["train"]
    assert cli.metrics == tuned.metrics


def test_data_panel_errors_clear_the_view_and_name_line_and_case(session: Session, tmp_path: Path):
    """Item 9: file line numbers, a did-you-mean for the target, a failed load clears the previous summary."""
    import pandas as pd

    good = tmp_path / "cancer_mixed.csv"
    frame = pd.DataFrame({"radius": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] * 5, "site": ["a", "b", "c"] * 10,
                          "clinic": ["north"] * 30, "diagnosis": ["benign", "malignant"] * 15})
    frame.to_csv(good, index=False)
    wizard = Wizard(session)
    panel = wizard["data"]
    panel.source.value, panel.path.value, panel.target.value = "(file path or upload)", str(good), "diagnosis"
    click(panel)
    assert "30 rows" in panel.table.value and panel.plot.value
    # text columns show no mean (no "nan"), and the constant column is flagged
    shown = __import__("html").unescape(panel.table.value)
    assert "<td>nan</td>" not in shown and "'clinic' (always 'north')" in shown
    assert wizard["package"].name.value == "kit-cancer_mixed"  # item 2: the default name follows the data
    panel.target.value = "Diagnosis"
    click(panel)
    assert "did you mean 'diagnosis'" in __import__("html").unescape(panel.status.value)
    assert panel.table.value == "" and not panel.plot.value and session.dataset is None
    assert "not loaded" in wizard.header.value
    bad = tmp_path / "bad.csv"
    frame.astype(object).assign(radius=lambda f: f["radius"].where(f.index != 3, "abc")).to_csv(bad, index=False)
    panel.path.value, panel.target.value = str(bad), "diagnosis"
    click(panel)
    assert "line 5 (data row 3)" in panel.status.value  # line 1 is the header


def test_constant_column_is_dropped_recorded_and_need_not_be_sent(tmp_path: Path):
    """Item 9: a constant column is left out of the features, recorded, and requests may omit or send it."""
    import pandas as pd

    from kit.card import card
    from kit.serving._rows import check_rows

    rng = __import__("numpy").random.default_rng(0)
    x = rng.normal(size=200)
    frame = pd.DataFrame({"x": x, "z": rng.normal(size=200), "clinic": "north", "label": (x > 0).astype(int)})
    path = tmp_path / "c.csv"
    frame.to_csv(path, index=False)
    summary = kit.load(kit.DataConfig(source=str(path), target="label")).summary()
    assert summary.constant == {"clinic": "north"} and "'clinic' (always 'north')" in str(summary)
    bundle = kit.train.train(kit.DataConfig(source=str(path), target="label"), kit.TrainConfig(epochs=2)).bundle
    assert bundle.feature_names == ["x", "z"] and bundle.schema["constant"] == {"clinic": "north"}
    assert bundle.predict([{"x": 1.0, "z": 0.0}]) == bundle.predict([{"x": 1.0, "z": 0.0, "clinic": "north"}])
    check_rows(bundle, {"rows": [{"x": 1.0, "z": 0.0}, {"x": 1.0, "z": 0.0, "clinic": "north"}]}, 10)
    assert "clinic = north" in card(bundle).markdown()
    assert ModelBundle.load(bundle.save(tmp_path / "b")).preprocessor.constant_ == {"clinic": "north"}


def test_gate_panel_runs_keeps_every_run_and_package_relies_on_the_verdict(trained: Session):
    """#12: the Gate step between Quantize and Package; #18 item 5: a laxer pass needs a reason."""
    panel = GatePanel(trained)
    panel.skip.value = ("explanation_stability",)
    panel.max_p99_ms.value = 1e-6
    click(panel)
    assert trained.bundle.gate_status == "failed" and "FAILED" in panel.table.value
    assert trained.gate_config.max_p99_ms == 1e-6 and trained.outputs["gate"]["run"] == 1
    # A laxer run passes but, without a reason, the failure stands (and both runs are listed).
    panel.max_p99_ms.value = 50.0
    click(panel)
    verdict = trained.bundle.gate
    assert verdict.run == 1 and not verdict.passed and len(verdict.history) == 2
    assert "not accepted" in panel.table.value and "no reason was given" in panel.history.value
    import kit.package

    package = PackagePanel(trained)
    with pytest.raises(kit.package.GateFailedError, match=r"kit\.gate\.gate\(bundle, config=\.\.\., reason="):
        package.save()
    panel.reason.value = "p99 limit typed in seconds by mistake"
    click(panel)
    verdict = trained.bundle.gate
    assert verdict.passed and verdict.run == 3 and verdict.override["replaces_run"] == 1
    assert "override of failed run 1" in panel.history.value
    assert "relies on gate run 3 of 3" in kit.package.gate_line(trained.bundle)
    # The baseline check (#13) is listed, and its settings are the panel's: the gap allowed, warn or fail.
    assert "<td>baseline</td>" in panel.table.value
    panel.max_baseline_gap.value, panel.baseline_action.value = "0.5", "fail"
    assert (panel.config().max_baseline_gap, panel.config().baseline_action) == (0.5, "fail")
    panel.max_baseline_gap.value = "half"
    with pytest.raises(kit.errors.ConfigError, match="max_baseline_gap must be a number or empty"):
        panel.config()


def test_a_new_model_invalidates_the_stored_tag_and_the_server_claim(trained: Session):
    """Item 1 without a server: a retrain, quantize or data change drops the stored tag and says so."""
    panel = PackagePanel(trained)
    trained.store("ui-test:v1")
    trained.record("package", {"model_tag": "ui-test:v1", "matches_notebook": True})
    panel.served, panel.url = ("ui-test:v1", trained.version), "http://127.0.0.1:1"
    train = TrainPanel(trained)
    train.epochs.value, train.seed.value = 3, 7
    click(train)
    assert "model" not in trained.tags and "package" not in trained.outputs
    assert "the model was retrained after ui-test:v1 was stored" in trained.stale
    assert "a previous model" in panel.table.value and "ui-test:v1" in panel.table.value
    assert panel.current_tag.__doc__  # Start server and Build store the current model first (see the server test)


def test_served_answer_check_compares_tag_and_probabilities(bc_bundle: ModelBundle):
    """Item 1: labels alone do not make a match; the tag and every probability (within 1e-5) must agree."""
    rows = bc_bundle.example(2)
    local = bc_bundle.infer(rows)
    answer = local.records()
    assert compare(local, answer, "bc:v2", "bc:v2")["matches_notebook"]
    assert not compare(local, answer, "bc:v1", "bc:v2")["matches_notebook"]  # a stale server
    shifted = [{**r, "probabilities": {k: v + 0.01 * (i == 0) - 0.01 * (i == 1)
                                        for i, (k, v) in enumerate(r["probabilities"].items())}} for r in answer]
    check = compare(local, shifted, "bc:v2", "bc:v2")
    assert check["same_labels"] and not check["matches_notebook"] and check["max_difference"] > 0.009


def test_explain_row_says_what_was_predicted_and_which_class_is_explained(trained: Session):
    """Item 6: the waterfall and the row line name the predicted label and the explained output."""
    panel = ExplainPanel(trained)
    panel.rows.value, panel.background_size.value = 8, 20
    click(panel)
    ex = trained.objects["explain"]
    fig = ex.plot_waterfall(0, max_display=5)
    title = fig.axes[0].get_title(loc="left")
    assert f"predicted {ex.predicted[0]!r}" in title and "explaining log-odds of class 'benign'" in title
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[-1] == f"{len(ex.feature_names) - 4} other features"
    # every bar and its value label lie inside the axes
    lo, hi = fig.axes[0].get_xlim()
    for bar in fig.axes[0].patches:
        assert lo <= bar.get_x() <= hi and lo <= bar.get_x() + bar.get_width() <= hi
    assert f"predicted <b>{ex.predicted[0]}</b>" in panel.row_info.value and "explained output" in panel.row_info.value


def test_static_copy_of_the_wizard_holds_every_panel_and_its_plots(trained: Session):
    """Item 4: what a report shows without a widget renderer (text/html beside the widget view)."""
    wizard = Wizard(trained, steps=["data", "train", "gate", "package"])
    data = wizard._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    static = data["text/html"]
    for title in ("Data", "Train", "Gate", "Package &amp; serve"):
        assert f"<h4>{title}</h4>" in static
    wizard.panels["train"].render()
    wizard.panels["train"].refresh_plot()
    assert "data:image/png;base64," in wizard.static_html()


def test_a_click_while_a_step_runs_is_queued_not_lost(session: Session):
    import threading

    panel = DataPanel(session)
    release, rendering = threading.Event(), threading.Event()
    finished = panel._finished

    def slow_finish(result, seconds):  # the outcome takes a while to render (tables, plots, static copy)
        rendering.set()
        release.wait(10)
        finished(result, seconds)

    panel._finished = slow_finish  # type: ignore[method-assign]
    first = panel.start(lambda _c: "first", "loading")
    assert rendering.wait(10)
    # while the outcome renders, every button stays disabled, so a user cannot click into the gap
    assert panel.button.disabled and first.running
    # a click that lands anyway (a front-end a moment behind) is queued and runs next, never dropped
    ran = []
    panel.start(lambda _c: ran.append("second") or "second", "loading again")
    assert "queued" in panel.status.value
    release.set()
    deadline = time.monotonic() + 10
    while (not ran or panel.job.running) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ran == ["second"] and panel.job.result == "second" and not panel.button.disabled
    # Stop drops what is queued behind the running step
    block = threading.Event()
    panel.start(lambda _c: block.wait(10), "waiting")
    panel.start(lambda _c: ran.append("third"), "queued step")
    panel.stop()
    block.set()
    panel.job.wait(10)
    time.sleep(0.3)
    assert ran == ["second"]


# -- images (#14): the Explain panel per pixel, the network picker per kind of data -------------------------------
# Image models train on one torch thread: on the busy 2-core CI machine two threads made the small CNN ~27x slower.

@pytest.fixture(scope="module")
def cnn_bundle() -> ModelBundle:
    """A cnn trained on digits_images with the smoke profile (8 epochs), on one torch thread."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return kit.train.train("digits_images", kit.TrainConfig(net="cnn", epochs=8, patience=4)).bundle
    finally:
        torch.set_num_threads(saved)


@pytest.fixture()
def one_thread():
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture()
def images(tmp_path: Path, cnn_bundle: ModelBundle, one_thread) -> Session:
    """A session holding digits_images and the shared cnn."""
    s = Session(output_dir=tmp_path, smoke=True)
    s.load_data(kit.DataConfig(source="digits_images"))
    s.set_bundle(cnn_bundle, "train")
    return s


def test_explain_panel_explains_an_image_model_per_pixel(images: Session):
    """#14: explain_images off the UI thread with progress; the global map, the overlay of picked images, attached."""
    from kit.explain import IMAGE_BACKGROUND, ImageExplanation
    from kit.ui.explain_panel import IMAGE_METHODS

    panel = ExplainPanel(images)
    assert panel.kind == "image" and tuple(panel.method.options) == IMAGE_METHODS
    assert panel.image_view.controls.layout.display is None and panel.rows.description == "test images"
    assert [v for _, v in panel.image_view.target.options] == ["predicted", *map(str, range(10))]
    panel.rows.value, panel.background_size.value = 12, 20
    click(panel)
    ex = images.objects["explain"]
    assert isinstance(ex, ImageExplanation) and ex.values.shape == (12, 1, 8, 8) and not ex.stopped
    assert panel.image_view.progress.value == 12 and "done in" in panel.status.value
    assert f"method <b>{ex.method}</b> on 12 test images of 8x8x1" in panel.table.value
    # the global mean |SHAP| map, then the overlay of the first 4 images with a line each (base + SHAP = output)
    global_map, overlay = bytes(panel.plot.value), bytes(panel.row_plot.value)
    assert global_map.startswith(b"\x89PNG") and overlay.startswith(b"\x89PNG")
    assert "images 0 to 3 of 12" in panel.row_info.value and panel.row.max == 11
    assert f"<td>{ex.predicted[0]}</td>" in panel.row_info.value
    # the true labels come from the test split, in the same order as the explained images
    truth = [str(cnn_label) for cnn_label in
             [images.bundle.label_names[i] for i in images.splits.test.y[:12]]]
    assert panel.image_view.truth == truth
    # attached to the model as the table path attaches its explanation: section + background images
    section = images.bundle.sections["explanation"]
    assert section["rows_explained"] == 12 and section["background_artifact"] == IMAGE_BACKGROUND
    assert IMAGE_BACKGROUND in images.bundle.artifacts and images.outputs["explain"]["kind"] == "image"
    assert "mean_abs_map" not in images.outputs["explain"]  # results.json keeps the summary, not the map
    # both pictures go into the static copy (what an HTML report shows)
    assert panel.images() == [global_map, overlay] and panel.static_html().count("<img") == 2
    # pick the images shown: from image 5, two of them; the overlay follows
    panel.row.value = 5
    panel.image_view.count.value = 2
    assert "images 5 to 6 of 12" in panel.row_info.value and bytes(panel.row_plot.value) != overlay
    # only the misclassified ones (none is a valid answer, said so)
    panel.image_view.show.value = "wrong"
    wrong = [i for i in range(12) if truth[i] != str(ex.predicted[i])]
    assert panel.image_view.candidates() == wrong
    assert (not wrong and "none of the 12" in panel.row_info.value) or f"images {wrong[0]} to" in panel.row_info.value
    panel.image_view.show.value = "all"
    # another class explains again, in the background; every image is then explained for class '3'
    panel.image_view.target.value = "3"
    assert panel.job.wait(WAIT)
    again = images.objects["explain"]
    assert again is not ex and set(again.target) == {"3"} and "class &#x27;3&#x27;" in panel.table.value
    assert images.bundle.configs["explain"]["target"] == "3"


def test_explain_panel_stop_keeps_the_images_explained_so_far(images: Session):
    """Stop ends explain_images at its next chunk; what was explained is shown and attached."""
    from kit.explain import explain_images
    from kit.explain._images import chunk_size

    panel = ExplainPanel(images)
    panel.rows.value, panel.background_size.value = 60, 20
    first = chunk_size(60, 20)
    assert first < 60
    # Stop pressed the moment the first chunk is reported (the observer runs in the job's thread)
    panel.image_view.progress.observe(lambda c: panel.stop() if c["new"] == first else None, names="value")
    click(panel)
    ex = images.objects["explain"]
    assert ex.stopped and len(ex.values) == first and f"stopped after {first} of 60 images" in ex.why
    assert "stopped by you" in panel.status.value and "(stopped by you)" in panel.table.value
    assert images.bundle.sections["explanation"]["rows_explained"] == first
    # a stop before the first chunk explains nothing (and says where it stopped)
    none = explain_images(images.bundle, images.splits.test.X.head(4), images.splits.train.X, background_size=10,
                          should_stop=lambda: True)
    assert none.values.shape == (0, 1, 8, 8) and none.stopped and "stopped after 0 of 4" in none.why


def test_explain_panel_follows_the_kind_of_the_current_model(trained: Session, cnn_bundle: ModelBundle, one_thread):
    """A table explanation, then image data: the table view is cleared and the image controls shown; and back."""
    from kit.explain import METHODS

    panel = ExplainPanel(trained)
    assert panel.kind == "table" and panel.image_view.controls.layout.display == "none"
    panel.rows.value, panel.background_size.value, panel.method.value = 8, 20, "permutation"
    click(panel)
    assert "additivity error" in panel.table.value and panel.plot.value
    trained.load_data(kit.DataConfig(source="digits_images"))
    trained.set_bundle(cnn_bundle, "train")
    assert panel.kind == "image" and panel.table.value == "" and not panel.plot.value and not panel.row_plot.value
    assert panel.method.value == "auto" and panel.image_view.picker.layout.display is None
    trained.load_data(kit.DataConfig())
    assert panel.kind == "table" and tuple(panel.method.options) == tuple(METHODS)
    assert panel.image_view.controls.layout.display == "none" and panel.rows.description == "test rows"


def test_network_picker_offers_image_builders_for_images_and_table_nets_back(session: Session, one_thread):
    """#14: image data -> cnn and image builders (cnn by default); table data -> the table nets, as they were."""
    from torch import nn

    from kit import nets

    def tiny_image_net(input_shape, n_out, width: int = 4):
        c, h, w = input_shape
        return nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(width * h * w, n_out))

    tiny_image_net.inputs = ("image",)
    nets.register("tiny_image_net", tiny_image_net)
    nets.register("any_input_net", "custom_net:build")  # declares no inputs: offered for both kinds
    try:
        session.load_data(kit.DataConfig(source="wine"))
        panel, data = TrainPanel(session), DataPanel(session)
        picker = panel.net
        assert picker.choice.options == ("mlp", "resmlp", "ft_transformer", "any_input_net")
        picker.choice.value = "resmlp"
        picker.fields["width"].value = 32  # edited, not trained: still the one to come back to
        data.source.value = "digits_images"
        click(data)
        assert picker.choice.options == ("cnn", "any_input_net", "tiny_image_net")
        assert picker.choice.value == "cnn" and session.train_config.net == "cnn" and "cnn" in picker.status.value
        assert set(picker.fields) == {"width", "blocks", "head", "dropout", "activation", "norm"}
        assert picker.fields["blocks"].value == "" and panel.config().net_params == {}  # blocks: sized from the image
        assert "--net cnn" in panel.command.value
        picker.fields["width"].value, panel.epochs.value = 8, 2
        click(panel)
        assert session.bundle.net.builder == "cnn" and session.train_config.net_params == {"width": 8}
        # a registered image builder trains on the images too
        picker.choice.value = "tiny_image_net"
        click(panel)
        assert session.bundle.net.builder == "tiny_image_net" and session.bundle.kind == "image"
        picker.choice.value = "cnn"
        picker.fields["width"].value = 8
        # back to a table: the table nets, and the network the picker showed for tables, as it was
        data.source.value = "wine"
        click(data)
        assert picker.choice.options == ("mlp", "resmlp", "ft_transformer", "any_input_net")
        assert picker.choice.value == "resmlp" and picker.fields["width"].value == 32
        assert panel.config().net_params == {"width": 32}
        # and images again: the cnn as it was left
        data.source.value = "digits_images"
        click(data)
        assert picker.choice.value == "cnn" and panel.config().net_params == {"width": 8}
        # a table net typed in anyway is refused before training, naming what to use
        picker.choice.value = "mlp"
        click(panel)
        assert "takes table input, not images; use cnn" in panel.status.value
    finally:
        nets.unregister("tiny_image_net")
        nets.unregister("any_input_net")


def test_a_wizard_on_images_starts_with_the_cnn(tmp_path: Path):
    wizard = Wizard(data="digits_images", output_dir=tmp_path, smoke=True)
    assert wizard.session.train_config.net == "cnn" and wizard["train"].net.choice.value == "cnn"
    assert "mlp" not in wizard["train"].net.choice.options and wizard["explain"].kind == "image"


def test_a_tuned_cnn_comes_back_into_the_picker_and_its_cli_twin(images: Session, tmp_path: Path):
    """#14: the Train tab reproduces a tuned image config exactly, and its `kit train` line trains the same."""
    train_panel, tune_panel = TrainPanel(images), TunePanel(images)
    tune_panel.n_trials.value, tune_panel.trial_epochs.value, tune_panel.pruner.value = 2, 2, "none"
    click(tune_panel)
    tune_panel.use_best.click()
    tuned, best = tune_panel.result.bundle, tune_panel.result.best_config
    assert best.net == "cnn" and "width" in best.net_params and best.dropout is not None
    picker = train_panel.net
    assert picker.choice.value == "cnn" and picker.fields["width"].value == best.net_params["width"]
    assert picker.fields["dropout"].value == best.dropout
    assert train_panel.config() == best and "controls differ" not in train_panel.table.value
    argv, cli = cli_twin(train_panel, tmp_path / "cli-bundle", "--quiet", "--no-baselines")
    assert argv[argv.index("--data") + 1] == "digits_images" and argv[argv.index("--net") + 1] == "cnn"
    assert cli.configs["train"] == tuned.configs["train"] and cli.net.params == tuned.net.params
    assert cli.metrics == tuned.metrics


def test_package_panel_sends_test_images_as_base64_png(images: Session):
    """The test request of an image model: the first test images as base64 PNG, drawn beside the JSON."""
    from kit.ui.package_panel import image_rows, request_html

    panel = PackagePanel(images)
    rows = panel.test_rows()
    assert len(rows) == 3 and all(set(r) == {"image"} and r["image"].startswith("iVBORw0KGgo") for r in rows)
    # the PNG files decode to the test images themselves: the same prediction as the pixels
    pixels = images.bundle.preprocessor.pixels(images.splits.test.X.head(3))
    assert images.bundle.infer(rows).labels == images.bundle.infer(pixels).labels
    assert rows == image_rows(images.bundle, images.splits.test.X.head(3))
    answer = images.bundle.infer(rows).records()
    shown = request_html(rows, answer)
    assert shown.count("<img") == 3 and "base64 characters, drawn below" in shown and rows[0]["image"] in shown
    assert f"row 0: {answer[0]['prediction']}" in shown  # each picture captioned with the served answer
