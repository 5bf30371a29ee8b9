"""Every notebook under papermill with smoke=True (through `kit run`), judged by its results.json.

First, without running anything: each notebooks/NN_name.py (py:percent, the file people edit)
has its paired NN_name.ipynb holding the same cells, committed without outputs. Then one
`kit run --smoke` over notebooks/ (session-scoped, chained the way `kit run` chains them), then
one test per notebook asserting on what it wrote: metric floors, files that exist, store tags
that resolve. The failure notebooks under tests/notebooks/ check that `kit run` names the
notebook and cell that failed, and refuses unknown or mistyped parameters.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import jupytext
import nbformat
import pytest

import kit
from kit.bundle import ModelBundle
from kit.cli import main
from kit.runner import Report, discover, run_notebooks

ROOT = Path(__file__).resolve().parents[1]
FAILURES = Path(__file__).resolve().parent / "notebooks"
FLOOR = 0.9  # breast_cancer accuracy floor, even for smoke-sized training
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    """What a pair must agree on: each cell's type, source and tags."""
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def test_notebooks_are_py_percent_files_paired_with_an_ipynb():
    folder = ROOT / "notebooks"
    config = tomllib.loads((folder / "jupytext.toml").read_text())
    assert config["formats"] == "ipynb,py:percent"
    assert [p.stem for p in SOURCES] == ["00_quickstart", "01_data_train", "02_tune", "03_explain",
                                         "04_quantize", "05_package_serve", "06_custom_network", "07_images"]
    # No notebook without its .py (kit run executes every NN_*.ipynb it finds).
    assert sorted(p.stem for p in folder.glob("[0-9][0-9]_*.ipynb")) == [p.stem for p in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_each_pair_holds_the_same_cells_without_outputs(source: Path):
    text = jupytext.read(source)
    assert text.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
    ipynb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    nbformat.validate(ipynb)
    assert cells(text) == cells(ipynb), f"{source.name} and its .ipynb differ: run `make notebooks`"
    code = [c for c in ipynb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "commit the .ipynb without outputs"
    # One typed, commented parameters cell (papermill --help-notebook reads it) with smoke and output_dir.
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert "smoke: bool = False" in params[0].source
    assert re.search(r"^output_dir: str = .+  # ", params[0].source, re.M)


STEPS = [p for p in SOURCES if p.stem != "00_quickstart"]


@pytest.mark.parametrize("source", STEPS, ids=lambda p: p.stem)
def test_step_notebooks_read_as_tutorials(source: Path):
    nb = jupytext.read(source)
    params = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    # Every parameters line is a typed, commented parameter or a "# heading" comment (no unlabelled gap).
    assert all(re.match(r"^(# \S.*|\w+: \w+ = .+  # \S.*)$", line) for line in params.splitlines()), params
    # The default output folder does not depend on the working directory (kit.notebook.output_folder).
    assert 'output_dir: str = ""' in params and f'output_folder(output_dir, "{source.stem}")' in code
    # Smoke goes through the one profile, never a ternary in the tutorial code.
    assert "if smoke else" not in code and "smoke_if(smoke)" in code
    # Each notebook says how long a full run takes.
    assert "**How long:**" in nb.cells[0].source
    if "bundle_path: str" in params:  # 02-05: start from a bundle or train on any data, CSV included
        assert "target: str" in params and "load_or_train(bundle_path, data, target, smoke=smoke)" in code


@pytest.fixture(scope="module")
def bento_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private BentoML store for the notebooks' kernels."""
    return tmp_path_factory.mktemp("bentoml")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, bento_home: Path) -> Iterator[Report]:
    """`kit run --smoke` over all notebooks, with a private BentoML store."""
    home = bento_home
    old = os.environ.get("BENTOML_HOME")
    os.environ["BENTOML_HOME"] = str(home)  # the kernels inherit it
    try:
        yield run_notebooks(discover(folder=ROOT / "notebooks"), smoke=True,
                            out=tmp_path_factory.mktemp("reports"), echo=False)
    finally:
        if old is None:
            os.environ.pop("BENTOML_HOME", None)
        else:
            os.environ["BENTOML_HOME"] = old


def results(report: Report, name: str) -> dict:
    run = next(r for r in report.runs if r.name == name)
    assert run.ok, run.error
    # The executed notebook and its HTML report are kept, whatever the notebook.
    assert run.executed.exists() and run.html is not None and run.html.stat().st_size > 10_000
    return json.loads((run.output_dir / "results.json").read_text())


def figures(report: Report, name: str) -> list[str]:
    """The first line of each code cell that drew a figure (a PNG output), in the executed notebook."""
    run = next(r for r in report.runs if r.name == name)
    nb = nbformat.read(run.executed, as_version=4)
    return [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if "image/png" in o.get("data", {})]


def outputs(report: Report, name: str, marker: str) -> str:
    """The text a notebook printed in the code cell whose source holds ``marker``."""
    run = next(r for r in report.runs if r.name == name)
    nb = nbformat.read(run.executed, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and marker in c.source)
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def store_has(home: Path, kind: str, tag: str) -> bool:
    """Whether a BentoML model or bento tag resolves in the store at ``home`` (its folder exists)."""
    name, version = tag.split(":")
    return (home / kind / name / version / ("model.yaml" if kind == "models" else "bento.yaml")).is_file()


def test_every_notebook_ran_and_the_index_links_them(report: Report):
    assert report.ok, [r.error for r in report.runs if not r.ok]
    assert [r.name for r in report.runs] == ["00_quickstart", "01_data_train", "02_tune", "03_explain",
                                             "04_quantize", "05_package_serve", "06_custom_network", "07_images"]
    index = report.index.read_text()
    assert all(f"{r.name}.html" in index for r in report.runs)
    summary = json.loads((report.folder / "summary.json").read_text())
    assert summary["ok"] and all(nb["parameters"]["smoke"] is True for nb in summary["notebooks"])


def test_chaining_passes_each_bundle_to_the_next_notebook(report: Report):
    by_name = {r.name: r for r in report.runs}
    first = json.loads((by_name["01_data_train"].output_dir / "results.json").read_text())
    # 02_tune declares bundle_path and got the bundle 01_data_train wrote; 03 got the tuned one.
    assert by_name["02_tune"].parameters["bundle_path"] == first["bundle_path"]
    tuned = json.loads((by_name["02_tune"].output_dir / "results.json").read_text())
    assert by_name["03_explain"].parameters["bundle_path"] == tuned["bundle_path"]


def test_quickstart_wizard_ran_every_step(report: Report, bento_home: Path):
    res = results(report, "00_quickstart")
    assert res["metrics"]["test"]["accuracy"] >= FLOOR
    assert set(res["steps"]) >= {"train", "tune", "explain", "quantize", "package"}
    assert res["missing_steps"] == []
    # The served answer equals the notebook's predictions, and the store tags exist on disk.
    assert res["steps"]["package"]["matches_notebook"] is True
    assert store_has(bento_home, "models", res["tags"]["model"])
    assert store_has(bento_home, "bentos", res["tags"]["bento"])
    run = next(r for r in report.runs if r.name == "00_quickstart")
    html = run.html.read_text()  # type: ignore[union-attr]
    # The HTML report shows every panel's static copy (no widget renderer, no CDN); the executed
    # notebook keeps the widget state.
    assert "unpkg.com" not in html and "application/vnd.jupyter.widget-view+json" not in html
    assert "kit-wizard-static" in html and "chosen variant" in html and "<h4>Gate</h4>" in html
    assert "data:image/png;base64," in html
    assert "application/vnd.jupyter.widget-state+json" in run.executed.read_text()
    assert res["steps"]["gate"]["verdict_passed"] is True
    assert Path(res["bundle_path"]).is_dir()


def test_data_train_notebook(report: Report):
    res = results(report, "01_data_train")
    assert res["metrics"]["test"]["accuracy"] >= FLOOR and res["steps"]["train"]["epochs_run"] <= kit.SMOKE.epochs
    bundle = ModelBundle.load(res["bundle_path"])
    assert bundle.metrics == res["metrics"]
    assert len(bundle.predict(bundle.example(3))) == 3
    # Shown inline: the target, the features, the training curves, the confusion matrix and ROC curve.
    assert len(figures(report, "01_data_train")) == 4


def test_tune_notebook(report: Report):
    res = results(report, "02_tune")
    assert sum(res["tuning"]["n_trials"].values()) >= 3
    assert res["metrics"]["test"]["accuracy"] >= FLOOR
    assert Path(res["artifacts"]["plots"]).stat().st_size > 1000
    # The trials plot (pruned trials included) is shown inline and saved; importances when the study can tell.
    assert figures(report, "02_tune")[0] == "display(result.plot_trials())"
    assert len(figures(report, "02_tune")) == 1 + bool(res["importances"])
    assert Path(res["artifacts"]["trials_plot"]).stat().st_size > 1000
    assert not res["importances"] or sum(res["importances"].values()) == pytest.approx(1.0)
    # The tuned bundle says which study and trial it came from.
    assert ModelBundle.load(res["bundle_path"]).sections["tuning"]["best_trial"] == res["tuning"]["best_trial"]


def test_explain_notebook(report: Report):
    res = results(report, "03_explain")
    ex = res["explanation"]
    assert ex["additivity_error"] <= ex["tolerance"]
    assert len(res["top_features"]) == 5
    assert Path(res["artifacts"]["importance_plot"]).exists()
    assert "explanation" in ModelBundle.load(res["bundle_path"]).sections
    # Bar, beeswarm, dependence and waterfall plots, each shown inline.
    assert len(figures(report, "03_explain")) == 4
    # The row shown in detail: its output adds up from the base value, in the stated units.
    assert "explained output (log-odds of class 'benign')" in outputs(report, "03_explain", "ex.row_index[row]")


def test_quantize_notebook(report: Report):
    res = results(report, "04_quantize")
    chosen = ModelBundle.load(res["bundle_path"])
    assert chosen.runtime_info["variant"] == res["chosen"] or (res["chosen"] == "torch-fp32"
                                                              and chosen.runtime_info["name"] == "torch")
    assert res["metrics"]["test"]["accuracy"] >= FLOOR and res["agreement_with_fp32"] >= 0.95
    assert Path(res["artifacts"]["pareto_plot"]).exists()
    # Latency by batch size: every measured variant at each size, plotted inline and saved.
    timed = {(r["variant"], r["batch"]) for r in res["latency_by_batch"]}
    ok = [name for name, v in res["variants"].items() if v["status"] == "ok"]
    assert timed == {(v, b) for v in ok for b in (1, 4, 16, 64, 256)}
    assert Path(res["artifacts"]["latency_by_batch_plot"]).stat().st_size > 1000
    # #17: the compression frontier, its choice within the same budget, saved beside the quantized bundle
    frontier = res["frontier"]
    assert frontier["budget"] == 0.005 and frontier["chosen"] in {r["variant"] for r in frontier["rows"]}
    assert all(r["lineage"] for r in frontier["rows"]) and Path(res["artifacts"]["frontier_plot"]).exists()
    chosen_row = next(r for r in frontier["rows"] if r["variant"] == frontier["chosen"])
    assert chosen_row["metric_drop"] <= 0.005 or chosen_row["network"] == "original"  # chosen on validation
    assert isinstance(chosen_row["test_metric_drop"], float)  # and reported on test
    assert ModelBundle.load(frontier["bundle_path"]).metrics["test"]
    assert len(figures(report, "04_quantize")) == 3


def test_package_serve_notebook(report: Report, bento_home: Path):
    res = results(report, "05_package_serve")
    # The served answer equals the notebook's predictions; the gate ran; both tags resolve.
    assert res["served"]["matches_notebook"] is True and len(res["served"]["response"]) == 2
    assert res["gate"] in (True, False)
    assert store_has(bento_home, "models", res["tags"]["model"])
    assert store_has(bento_home, "bentos", res["tags"]["bento"])
    # The default store name comes from the dataset; the curl call from a shell got the same answer.
    assert res["tags"]["model"].startswith("kit-breast_cancer:")
    printed = outputs(report, "05_package_serve", "!{curl}").splitlines()
    assert printed[0].startswith("curl -s -X POST " + res["served"]["url"] + "/predict")
    by_curl, by_python = json.loads(printed[-1])[0], res["served"]["response"][0]
    # every prediction is numbered (the prediction log); the curl call is another prediction, same answer
    assert by_curl.pop("prediction_id") != by_python.pop("prediction_id")
    assert by_curl == by_python


def test_custom_network_notebook(report: Report, bento_home: Path):
    res = results(report, "06_custom_network")
    # A builder defined and registered in a cell: recorded as its function and classes.
    net = res["network"]
    assert net["builder"] == "resnet_tab" and net["source_kind"] == "function" and len(net["source_sha256"]) == 64
    assert net["onnx"]["max_abs_diff"] <= 1e-4
    assert res["metrics"]["test"]["accuracy"] >= FLOOR and res["baselines"]["best"][0] in ("logistic",
                                                                                            "hist_gradient_boosting")
    assert sum(res["tuning"]["n_trials"].values()) >= 3
    assert {"net.width", "net.blocks"} <= set(res["tuning"]["best_params"])
    # The edited builder was refused on torch, then allowed and recorded.
    assert res["code_changes"] and res["code_changes"][0]["builder"] == "resnet_tab"
    # Served by a process that never saw the builder, for the whole test split, equal to the notebook's answers.
    assert res["served"]["matches_notebook"] is True and res["served"]["rows"] == 86
    assert res["runtime"]["name"] == "onnxruntime" and store_has(bento_home, "models", res["served"]["tag"])
    bundle = ModelBundle.load(res["bundle_path"])
    assert bundle.net.builder == "resnet_tab" and "class ResidualNet" in bundle.artifacts["network_source.txt"].decode()


def test_images_notebook(report: Report, bento_home: Path):
    res = results(report, "07_images")
    # The digits written as PNG files into class folders, trained with the smoke profile (8 epochs: the
    # issue's 0.97 holds for the full run too, measured at 1.000, and in tests/test_images_train.py).
    assert res["images"] == {"count": 1797, "shape": [1, 8, 8], "classes": 10}
    assert res["metrics"]["test"]["accuracy"] >= 0.9
    assert res["explanation"]["method"] == "deep" and res["explanation"]["additivity_error"] < 1e-4
    assert res["quantization"]["int8_static_drop"] <= 0.01 and res["runtime"]["variant"] == "ort-int8-static"
    assert res["served"]["matches_notebook"] is True and res["served"]["rows"] == 270
    assert store_has(bento_home, "models", res["served"]["tag"]) and res["batch"]["scored"] == 1797
    # The sample grid, the loss curves, the SHAP overlay and the global map are drawn.
    assert len(figures(report, "07_images")) >= 4


def test_broken_cell_exits_nonzero_naming_notebook_and_cell(tmp_path: Path, capfd):
    code = main(["run", "--notebooks", str(FAILURES / "broken_cell.ipynb"), "--out", str(tmp_path), "--no-html"])
    captured = capfd.readouterr()  # the file descriptors: the kernel process writes to them too
    err = captured.err
    assert code == 1
    # The author's 4th cell (markdown, parameters, setup, then the failing cell) is named with the
    # statement that failed (line 8 of the cell, not its first line) and the error.
    assert "broken_cell.ipynb" in err and "ValueError: boom after 2 items" in err
    assert "cell 4, line 8 (In [" in err and "'check(len(items))'" in err
    # kernels talk over local IPC sockets: no "running over TCP without encryption" warning per notebook
    assert "without encryption" not in captured.err + captured.out


@pytest.mark.parametrize(("args", "message"), [
    (["-p", "cuont", "3"], "unknown parameter 'cuont'"),
    (["-p", "count", "three"], "parameter count is int, but got 'three'"),
    (["-p", "output_dir", "x"], "output_dir is set by kit run"),
])
def test_bad_parameters_are_errors_before_anything_runs(tmp_path: Path, capsys, args: list[str], message: str):
    code = main(["run", "--notebooks", str(FAILURES / "tiny.ipynb"), "--out", str(tmp_path), *args])
    assert code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before a report folder was made


def test_parameters_are_typed_and_yaml_sections_reach_one_notebook(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text("ratio: 2\ntiny:\n  label: from-yaml\n")
    code = main(["run", "--notebooks", str(FAILURES / "tiny.ipynb"), "--out", str(tmp_path / "r"), "--no-html",
                 "--params", str(params), "-p", "count", "7", "--smoke"])
    assert code == 0
    res = json.loads(next((tmp_path / "r").glob("*/tiny/results.json")).read_text())
    assert res == {"count": 7, "ratio": 2.0, "label": "from-yaml", "smoke": True}
