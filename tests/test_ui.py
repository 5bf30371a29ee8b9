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

WAIT = 240


def click(panel, button=None) -> None:
    (button or panel.button).click()
    assert panel.job.wait(WAIT), f"{panel.title} still running after {WAIT}s"


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
    assert [wizard.tabs.get_title(i) for i in range(6)] == [
        "1. Data", "2. Train", "3. Tune", "4. Explain", "5. Quantize", "6. Package & serve"]
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
    assert "stopped" in panel.status.value


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
    assert not panel.use_best.disabled
    panel.use_best.click()
    best = panel.result.best_config
    assert session.train_config == best and session.bundle is panel.result.bundle
    # The Train panel's controls now show the best trial's widths.
    assert train_panel.net.fields["hidden"].value == ",".join(map(str, best.hidden))


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


PACKAGE_SCRIPT = """
import sys
import kit
from kit.bundle import ModelBundle
from kit.ui import PackagePanel, Session

s = Session(output_dir=sys.argv[2], smoke=True)
s.load_data(kit.DataConfig())
s.set_bundle(ModelBundle.load(sys.argv[1]), "train")
p = PackagePanel(s)
p.name.value = "ui-test"
p.button.click(); assert p.job.wait(120), "save"
p.start_button.click(); assert p.job.wait(240), "start"
p.request_button.click(); assert p.job.wait(60), "request"
out = s.outputs["package"]
print("TAG", s.tags["model"], "MATCH", out["matches_notebook"], "N", len(out["response"]), "STATUS", p.status.value)
p.stop_server.click()
print("STOPPED", p.server is None)
"""


def test_package_panel_save_serve_request_stop(tmp_path: Path, bc_bundle: ModelBundle):
    """In a subprocess: the BentoML store location is fixed when bentoml is imported."""
    path = bc_bundle.save(tmp_path / "bundle")
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")}
    out = subprocess.run([sys.executable, "-c", PACKAGE_SCRIPT, str(path), str(tmp_path / "out")], env=env,
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("TAG"))
    tag = line.split()[1]
    # The served answer for two example rows equals the notebook's, and the server is gone after Stop.
    assert "MATCH True" in line and "N 2" in line and "STOPPED True" in out.stdout
    assert (tmp_path / "bentoml" / "models" / tag.replace(":", "/") / "model.yaml").is_file()
