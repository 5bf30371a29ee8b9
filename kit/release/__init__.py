"""Safe releases: champion and challenger, the prediction log, feedback, live quality, drift tests, decisions.

Everything a release needs to agree on lives in one store (:mod:`._db`; SQLite in
``$BENTOML_HOME/kit_release.db`` by default, any SQLAlchemy URL with ``KIT_LOG_URL``):

* :mod:`._state`: the release state per name (champion stack, challenger, canary share or shadow)
  and the promotion log, changed by atomic read-modify-writes (``_state.change``); the JSON-lines
  log of earlier versions is imported once (:func:`import_jsonl`);
* :mod:`._log`: :class:`PredictionLog`, the background writer of every prediction, stored in blocks
  (:mod:`._blocks`; read back one record per prediction with :func:`predictions`);
* :mod:`._feedback`: labels by prediction id (:func:`parse_items`, :func:`parse_csv`, :func:`record`);
* :mod:`._live`, :mod:`._performance`: live metrics with intervals and the confidence-based
  estimate, per version (:func:`performance`);
* :mod:`._drift`: KS and chi-squared drift tests with a multiple-testing correction (:func:`drift_tests`);
* :mod:`._routing`: the sticky canary split (:func:`to_challenger`) and :class:`ShadowRunner`;
* :mod:`._decision`: :func:`status` (champion vs challenger and a recommendation) and :func:`auto_rollback`.

Promoting and rolling back go through :func:`kit.package.promote` and :func:`kit.package.rollback`
(which check the model store); ``kit promote``, ``kit rollback`` and ``kit release status`` are the CLI.
"""

from __future__ import annotations

from kit.release._blocks import ROUTES
from kit.release._blocks import rows as predictions
from kit.release._db import STORE_ENV, redact, store_url
from kit.release._decision import Thresholds, auto_rollback, recommend, status
from kit.release._drift import tests as drift_tests
from kit.release._feedback import parse_csv, parse_items, record
from kit.release._log import Ids, PredictionLog
from kit.release._performance import load, performance
from kit.release._routing import ShadowRunner, bucket, to_challenger
from kit.release._state import LEGACY_LOG, Release, history, import_jsonl, read

__all__ = ["LEGACY_LOG", "ROUTES", "STORE_ENV", "Ids", "PredictionLog", "Release", "ShadowRunner", "Thresholds",
           "auto_rollback", "bucket", "drift_tests", "history", "import_jsonl", "load", "parse_csv", "parse_items",
           "performance", "predictions", "read", "recommend", "record", "redact", "status", "store_url",
           "to_challenger"]
