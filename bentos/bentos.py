"""Makes the stock ``bentoml serve bentos`` work from the repository root.

BentoML 1.4 resolves a relative directory argument against itself (``bentos/bentos``), misses,
and falls back to importing a module named ``bentos`` with ``bentos/`` on ``sys.path``: this one.
``cd bentos && bentoml serve`` and ``bentoml serve --working-dir bentos`` read bentofile.yaml instead.
"""

from service import KitService

__all__ = ["KitService"]
