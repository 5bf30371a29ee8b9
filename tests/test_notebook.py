"""kit.notebook: where a step notebook writes and which bundle it starts from (and the results builder's paths)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kit
import kit.notebook
from kit.bundle import ModelBundle
from kit.notebook import load_or_train, output_folder, project_root
from kit.results import notebook_results, write_results


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder (it holds a pyproject.toml) with a notebooks/ folder inside."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def test_project_root_is_the_nearest_folder_with_a_pyproject(project: Path) -> None:
    assert project_root(project / "notebooks") == project.resolve()
    assert project_root(project) == project.resolve()


def test_without_a_project_the_folder_itself_is_the_root(tmp_path: Path, monkeypatch) -> None:
    # A marker no folder above tmp_path holds, so the walk up finds none.
    monkeypatch.setattr(kit.notebook, "PROJECT_MARKERS", ("kit-test-no-such-marker",))
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert project_root(tmp_path / "a" / "b") == (tmp_path / "a" / "b").resolve()
    (tmp_path / "kit-test-no-such-marker").touch()
    assert project_root(tmp_path / "a" / "b") == tmp_path.resolve()


@pytest.mark.parametrize("cwd", ["", "notebooks"])
def test_default_output_folder_does_not_depend_on_the_working_directory(project: Path, cwd: str, monkeypatch) -> None:
    # Jupyter and `kit run` start the kernel in notebooks/; `papermill notebooks/x.ipynb` from the root.
    monkeypatch.chdir(project / cwd)
    folder = output_folder("", "02_tune")
    assert folder == (project / "runs" / "02_tune").resolve() and folder.is_dir()


def test_a_given_output_dir_is_used_as_it_is(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project / "notebooks")
    assert output_folder("../elsewhere/x", "02_tune") == (project / "elsewhere" / "x").resolve()
    assert output_folder(project / "abs", "02_tune") == (project / "abs").resolve()
    assert (project / "abs").is_dir()


def test_load_or_train_loads_a_saved_bundle(bc_bundle: ModelBundle, tmp_path: Path, capsys) -> None:
    path = bc_bundle.save(tmp_path / "bundle")
    loaded = load_or_train(str(path), data="wine", smoke=True)  # data is not used when a bundle is given
    assert loaded.metrics == bc_bundle.metrics and loaded.task == "binary"
    assert f"loaded the bundle at {path}" in capsys.readouterr().out


def test_load_or_train_trains_on_data_with_the_smoke_profile(tmp_path: Path, capsys) -> None:
    frame = kit.load("wine").frame.rename(columns={"target": "cultivar"})
    csv = tmp_path / "wine.csv"
    frame.to_csv(csv, index=False)
    bundle = load_or_train("", str(csv), "cultivar", smoke=True)
    assert bundle.target == "cultivar" and bundle.task == "multiclass"
    assert len(bundle.history) <= kit.SMOKE.epochs
    assert bundle.data_config.source == str(csv)
    assert "no bundle_path: trained a new model" in capsys.readouterr().out


def test_results_builder_makes_artifact_paths_absolute(project: Path, monkeypatch) -> None:
    monkeypatch.chdir(project)
    res = notebook_results("x", artifacts={"plot": Path("runs/plot.png"), "note": "kept as it is"})
    assert res["artifacts"] == {"plot": str(project.resolve() / "runs" / "plot.png"), "note": "kept as it is"}
    written = write_results(project / "out", res)
    assert json.loads(written.read_text())["artifacts"]["plot"] == res["artifacts"]["plot"]
