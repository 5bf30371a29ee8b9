"""Project-level contracts: fast import, consistent environments, documented commands, provisioned tools."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "shap", "bentoml", "ipywidgets", "optuna", "onnxruntime", "sklearn", "pyspark")


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


def test_ci_and_make_test_share_one_provisioning_script():
    makefile = (ROOT / "Makefile").read_text()
    ci, runner = ROOT / ".ci", (ROOT / ".ci" / "test.sh").read_text()
    provision = (ci / "provision.sh").read_text()
    # CI runs the README's command and nothing else: the Makefile's test target does the work ...
    run_lines = [line for line in (ci / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert "make test" in run_lines and not [line for line in run_lines if "apt-get" in line or "pytest" in line]
    # ... linting first, then the provisioned pytest run.
    recipe = re.search(r"^test:(.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe and "lint" in recipe.group(1)
    assert [line.strip() for line in recipe.group(2).splitlines()] == ["bash .ci/test.sh $(PYTEST_ARGS)"]
    assert "source .ci/provision.sh" in runner and "kit_provision" in runner and ".venv/bin/pytest" in runner
    for package in ("chromium", "postgresql", "default-jre-headless", "prometheus"):
        assert package in provision
    exports = re.findall(r"^\s*export (.*)$", provision, re.M)
    exported = {word.split("=")[0] for line in exports for word in line.split()}
    assert {"KIT_TEST_POSTGRES_URL", "JAVA_HOME", "KIT_TEST_CHROMIUM", "KIT_TEST_PROMETHEUS", "KIT_TEST_PROMTOOL",
            "KIT_REQUIRE_ALL"} <= exported
    for script in ("run", "test.sh", "provision.sh"):
        text = (ci / script).read_text()
        assert "set -euo pipefail" in text, script
        syntax = subprocess.run(["bash", "-n", str(ci / script)], capture_output=True, text=True)
        assert syntax.returncode == 0, syntax.stderr


# --- the tools make test provisions actually work (skipped under plain pytest when missing) ------

def test_java_runs_from_java_home(java_home: Path):
    proc = subprocess.run([str(java_home / "bin" / "java"), "-version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    version = re.search(r'version "(?:1\.)?(\d+)', proc.stderr)
    assert version and int(version.group(1)) >= 17, proc.stderr  # PySpark 4 needs Java 17+


def test_prometheus_and_promtool_run(prometheus_bin: str, promtool_bin: str, tmp_path: Path):
    for binary in (prometheus_bin, promtool_bin):
        proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "version" in proc.stdout + proc.stderr, proc.stderr
    # promtool really checks alert rules: a good file passes, a broken expression is refused.
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    rule = "groups:\n- name: kit\n  rules:\n  - alert: KitDown\n    expr: {expr}\n    for: 1m\n"
    good.write_text(rule.format(expr="up == 0"))
    bad.write_text(rule.format(expr="up ==="))
    assert subprocess.run([promtool_bin, "check", "rules", str(good)], capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([promtool_bin, "check", "rules", str(bad)], capture_output=True, timeout=60).returncode != 0


@pytest.mark.postgres
def test_postgres_accepts_the_password_and_refuses_another(postgres_url: str):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    url = make_url(postgres_url)
    assert url.host == "127.0.0.1" and url.password
    engine = create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == url.username
    finally:
        engine.dispose()
    # Password auth over TCP: a wrong password is refused (the server does not trust loopback).
    wrong = create_engine(url.set(password="not-" + str(url.password)), connect_args={"connect_timeout": 10})
    try:
        with pytest.raises(OperationalError, match="password authentication failed"):
            wrong.connect()
    finally:
        wrong.dispose()


def test_require_all_turns_a_missing_part_into_a_failure(tmp_path: Path):
    # A fresh pytest in which nothing is provisioned: skipped normally, failed under KIT_REQUIRE_ALL.
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_needs.py").write_text(
        "def test_pg(postgres_url): pass\n"
        "def test_promtool(promtool_bin): pass\n"
        "def test_java(java_home): pass\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("KIT_TEST_POSTGRES_URL", "KIT_TEST_PROMTOOL", "JAVA_HOME", "KIT_REQUIRE_ALL")}
    env["PATH"] = str(Path(sys.executable).parent)  # no promtool, no java
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path)]
    plain = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert plain.returncode == 0 and "3 skipped" in plain.stdout, plain.stdout[-2000:]
    assert "make test` provisions it" in plain.stdout
    strict = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env={**env, "KIT_REQUIRE_ALL": "1"},
                            timeout=300)
    assert strict.returncode == 1 and "3 error" in strict.stdout, strict.stdout[-2000:]


def _kit_modules() -> dict[str, Path]:
    """Every module of the kit package by dotted name."""
    out = {}
    for path in sorted((ROOT / "kit").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _module_level_imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """kit modules imported when ``name`` is imported: top-level imports, not TYPE_CHECKING or function bodies."""
    import ast

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in modules:  # "kit.quantize.attach" -> "kit.quantize"
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    def scan(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                scan(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                scan(node.body + [s for h in node.handlers for s in h.body] + node.orelse + node.finalbody)

    scan(ast.parse(path.read_text()).body)
    return found


def test_no_module_level_import_cycles_inside_kit():
    modules = _kit_modules()
    graph = {name: {m for m in _module_level_imports(path, name, modules) if m.startswith("kit")}
             for name, path in modules.items()}
    # A package importing its own submodules is how re-exports work; a cycle is a submodule importing
    # back a module that (directly or through others) imports it, outside that package-init pattern.
    edges = {name: {m for m in deps if not (name.startswith(m + ".") and m in graph)} for name, deps in graph.items()}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)
    assert not cycles, cycles


def test_no_module_is_much_over_400_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in _kit_modules().values()}
    assert not {k: v for k, v in sizes.items() if v > 420}, "split these modules"


def test_only_the_cli_package_imports_argparse():
    users = [str(p.relative_to(ROOT)) for p in _kit_modules().values()
             if re.search(r"^\s*(import argparse|from argparse)", p.read_text(), re.M)
             and "kit/cli/" not in p.as_posix()]
    assert users == []


def test_every_subcommand_module_is_registered_statically():
    from kit import cli

    modules = sorted(p.stem for p in (ROOT / "kit" / "cli").glob("*.py") if not p.stem.startswith("_"))
    assert sorted(m.__name__.rsplit(".", 1)[1] for m in cli.COMMANDS) == modules
