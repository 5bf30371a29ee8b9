"""Project-level contracts: fast import, consistent environments, documented commands."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "shap", "bentoml", "ipywidgets", "optuna", "onnxruntime", "sklearn")


def test_import_kit_loads_no_heavy_dependency():
    code = f"import sys, kit; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_help_loads_no_heavy_dependency():
    code = (f"import sys\nfrom kit.cli import build_parser\nbuild_parser()\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=" + re.search(r"(\d+\.\d+)", project["requires-python"]).group(1)
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    # torch is pinned the same way in both places (never a loose, CUDA-pulling requirement).
    assert project["optional-dependencies"]["train"] == [p for p in pip if p.startswith("torch")]
    assert "-e .[all]" in pip and "all" in project["optional-dependencies"]


def test_torch_is_never_a_loose_requirement():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for v in project["optional-dependencies"].values() for r in v]
    torch_reqs = [r for r in reqs if re.match(r"torch\b", r)]
    assert torch_reqs and all(r == "torch==2.13.*" for r in torch_reqs)


def test_readme_documents_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
