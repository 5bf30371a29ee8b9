"""kit's BentoML service: HTTP wiring only. Checks, scoring and drift live in kit.serving,
the prediction path in kit.bundle.ModelBundle.infer (the same path as the notebook).

Model: resolved once by kit.package.served (env KIT_MODEL_TAG, else the bento argument model_tag
set by `kit build`, else the latest promoted version). Settings: KIT_* variables, see
kit.serving.Settings (one worker per CPU unless KIT_WORKERS says otherwise) and kit.release.ReleaseSettings.

POST /predict is answered by kit.serving.AdmissionMiddleware (parsed and checked once, merged with
concurrent requests by kit's batcher, answered through the same ServedModel); the `predict` API below
declares it for the OpenAPI document and clients, and serves it when KIT_FAST_PATH=0.

Release: each worker follows the release state of the model's name (champion, canary or shadow
challenger; kit promote / kit rollback) without a restart, numbers and logs every prediction and
answers /feedback, /feedback_file, /performance and /release (kit.serving.start_release; KIT_RELEASE=0
turns it off). The APIs below use the current champion (STATE.model), which a promotion replaces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml
from starlette.responses import JSONResponse, Response

from kit import package, serving
from kit.bundle import ModelBundle
from kit.errors import KitError

SETTINGS = serving.Settings.from_env()
SERVED = package.served(arguments=bentoml.use_arguments())
STATE = serving.AdmissionState(SETTINGS)


def _error(exc: KitError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status_code)


@bentoml.service(name="kit", workers=SETTINGS.workers, traffic={"timeout": 60})
class KitService:
    """Predict, batch-score, explain, describe and watch drift for one stored kit model."""

    model_ref = bentoml.models.BentoModel(SERVED.tag)

    def __init__(self) -> None:
        STATE.attach(ModelBundle.load(self.model_ref.path), SERVED.tag, SERVED.store_info())
        serving.start_release(STATE, SERVED)

    @property
    def kit(self) -> serving.ServedModel:
        """The champion now served (a promotion or rollback replaces it while the server runs)."""
        assert STATE.model is not None
        return STATE.model

    @bentoml.api(batchable=SETTINGS.batching, max_batch_size=SETTINGS.max_batch_size,
                 max_latency_ms=SETTINGS.max_latency_ms)
    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows of {feature: value} -> one {prediction, probabilities} (or {prediction}) per row."""
        return self.kit.predict_rows(rows)

    @bentoml.api
    def predict_file(self, file: Path) -> Path:
        """A CSV upload -> CSV of predictions, one line per input row."""
        try:
            return Response(self.kit.predict_csv(file.read_bytes()), media_type="text/csv")  # type: ignore[return-value]
        except KitError as exc:
            return _error(exc)  # type: ignore[return-value]

    @bentoml.api
    def explain(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-feature SHAP values and base value, from the background stored in the bundle."""
        try:
            return self.kit.explain(rows)
        except KitError as exc:
            return _error(exc)  # type: ignore[return-value]

    @bentoml.api
    def metadata(self) -> dict[str, Any]:
        """Tag, metrics, input schema (types, categories), runtime and lineage (also GET)."""
        return self.kit.metadata()

    @bentoml.api
    def drift(self) -> dict[str, Any]:
        """PSI per feature of recent inputs vs the training reference (also GET; gauges on /metrics)."""
        return self.kit.refresh_gauges()


KitService.add_asgi_middleware(serving.AdmissionMiddleware, state=STATE)
# BentoML derives a JSON API's response media type from its output JSON schema on every call
# (about 17% of the worker's CPU per /predict, measured with py-spy); state it once instead.
for _name in ("predict", "explain", "metadata", "drift"):
    KitService.apis[_name].output_spec.media_type = "application/json"
