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
