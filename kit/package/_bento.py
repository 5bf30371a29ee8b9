"""Build a bento from ``bentos/`` with a stored model baked in (and its network's code when it serves on torch)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from kit.errors import KitError, require
from kit.package._resolve import resolve, served

BENTOS_DIR = Path(__file__).resolve().parents[2] / "bentos"
"""The BentoML service project (``service.py`` + ``bentofile.yaml``)."""


def build(tag: str | None = None, *, version: str | None = None, service_dir: str | os.PathLike[str] = BENTOS_DIR
          ) -> str:
    """Build a bento from ``bentos/`` with the model ``tag`` baked in (as the ``model_tag`` argument).

    The kit package is copied into the build context so the bento (and the image
    ``bentoml containerize`` makes from it) runs without a kit install; when the model serves on
    torch, so is its network builder's module (see :func:`network_code`).

    Returns:
        The bento tag, ``kit:<version>``.
    """
    bentoml = require("bentoml", "serve")
    import yaml

    full = resolve(tag)
    src = Path(service_dir)
    with tempfile.TemporaryDirectory(prefix="kit-build-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(src / "service.py", ctx / "service.py")
        shutil.copytree(src / "monitoring", ctx / "monitoring")
        shutil.copytree(Path(__file__).resolve().parents[1], ctx / "kit",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "ui"))
        bentofile = yaml.safe_load((src / "bentofile.yaml").read_text())
        bentofile["include"] = [*bentofile.get("include", []), *network_code(full, ctx)]
        (ctx / "bentofile.yaml").write_text(yaml.safe_dump(bentofile, sort_keys=False))
        # BentoML imports service.py by module name; a module of that name left by an earlier build in this
        # process (another model, a deleted build folder) would be reused and bake in the wrong model.
        sys.modules.pop("service", None)
        bento = bentoml.bentos.build_bentofile(str(ctx / "bentofile.yaml"), build_ctx=str(ctx), version=version,
                                               args={"model_tag": full})
    return str(bento.tag)


def network_code(tag: str, ctx: Path) -> list[str]:
    """Copy the module of a torch-served bundle's network builder into ``ctx``; its include patterns.

    A bundle served by an ONNX runtime needs no network code (nothing is copied). On torch, the
    builder's top-level module or package is copied next to ``service.py`` (the bento's import
    root), after checking that it still builds the network with the recorded source sha256.

    Raises:
        KitError: If the builder was defined in a notebook or cannot be found here, or its source changed.
    """
    from kit.bundle import ModelBundle

    bundle = ModelBundle.load(served(tag).path)
    if bundle.runtime_info.get("name") != "torch":
        return []
    net = bundle.net
    module_name = net.target.partition(":")[0]
    if module_name == "kit" or module_name.startswith("kit."):
        return []  # the zoo travels with kit itself
    if module_name == "__main__":
        raise KitError(f"{tag} serves on torch, and its network builder {net.builder!r} was defined in a notebook "
                       "or script (__main__), which a bento cannot import: move the builder to a module, or quantize "
                       "the bundle to an ONNX runtime (kit quantize), which needs no code", field="net")
    bundle.module()  # the builder imports here and its source sha256 matches the bundle's record
    top = module_name.split(".")[0]
    found = importlib.util.find_spec(top)
    if found is None or found.origin is None:
        raise KitError(f"cannot find module {top!r} of network builder {net.builder!r} to put it in the bento",
                       field="net")
    if found.submodule_search_locations:
        shutil.copytree(Path(found.origin).parent, ctx / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return [f"{top}/**/*.py"]
    shutil.copy2(found.origin, ctx / f"{top}.py")
    return [f"{top}.py"]
