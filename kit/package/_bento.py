"""Build a bento from ``bentos/`` with a stored model baked in."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from kit.errors import require
from kit.package._resolve import resolve

BENTOS_DIR = Path(__file__).resolve().parents[2] / "bentos"
"""The BentoML service project (``service.py`` + ``bentofile.yaml``)."""


def build(tag: str | None = None, *, version: str | None = None, service_dir: str | os.PathLike[str] = BENTOS_DIR
          ) -> str:
    """Build a bento from ``bentos/`` with the model ``tag`` baked in (as the ``model_tag`` argument).

    The kit package is copied into the build context so the bento (and the image
    ``bentoml containerize`` makes from it) runs without a kit install.

    Returns:
        The bento tag, ``kit:<version>``.
    """
    bentoml = require("bentoml", "serve")
    full = resolve(tag)
    src = Path(service_dir)
    with tempfile.TemporaryDirectory(prefix="kit-build-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(src / "service.py", ctx / "service.py")
        shutil.copy2(src / "bentofile.yaml", ctx / "bentofile.yaml")
        shutil.copytree(src / "monitoring", ctx / "monitoring")
        shutil.copytree(Path(__file__).resolve().parents[1], ctx / "kit",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "ui"))
        bento = bentoml.bentos.build_bentofile(str(ctx / "bentofile.yaml"), build_ctx=str(ctx), version=version,
                                               args={"model_tag": full})
    return str(bento.tag)
