"""Where kit keeps its files: BentoML's home directory (the model store, the release store, bentos).

A module of its own so that what needs only the path (the release store, the live-metrics process)
does not load the packaging code (:mod:`kit.package` loads pandas for batch scoring).
"""

from __future__ import annotations

import os
from pathlib import Path


def bentoml_home() -> Path:
    """``$BENTOML_HOME`` (BentoML's default ``~/bentoml`` when unset)."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
