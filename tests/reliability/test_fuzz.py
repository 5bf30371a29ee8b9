"""Fuzz: schemathesis-generated requests against the running service's own OpenAPI document.

The document is the one the server publishes at /docs.json. Its ``rows`` items are free-form
objects, so for /predict and /explain the item schema is filled in from the model's input schema
(typed features, required) to make most positive cases reach the model; negative cases break it.
Every response must be non-5xx and conform to the document (schema, content type, headers).
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from _server import Server
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

pytestmark = [pytest.mark.server, pytest.mark.slow]

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, response_headers_conformance]
# generated cases per (operation, mode); operations without inputs stop after their few distinct cases
BUDGET = {"/predict": (90, 50), "/explain": (30, 30), "/predict_file": (30, 30)}
DEFAULT_BUDGET = (25, 15)
MIN_REQUESTS = 300


def typed_rows(doc: dict[str, Any], features: list[dict[str, Any]], max_rows: dict[str, int]) -> dict[str, Any]:
    """The published document with /predict and /explain rows typed by the model's input schema."""
    out = copy.deepcopy(doc)
    props: dict[str, Any] = {}
    for f in features:
        if f["kind"] == "numeric":
            props[f["name"]] = {"type": ["number", "null"]}
        else:
            props[f["name"]] = {"anyOf": [{"enum": f["categories"]}, {"type": ["string", "null"]}]}
    for path, limit in max_rows.items():
        body = out["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        body["properties"]["rows"].update(
            minItems=1, maxItems=limit,
            items={"type": "object", "properties": props, "required": [f["name"] for f in features],
                   "additionalProperties": True})
    return out


class Tally:
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url, headers
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.tried = 0

    def send(self, case: Any, label: str) -> None:
        self.tried += 1
        try:
            response = case.call(base_url=self.url, headers=self.headers, timeout=60)
        except Exception as exc:  # a dropped connection is a failure too
            self.failures.append(f"{label}: request failed: {exc!r}")
            return
        self.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=self.headers)
        except FailureGroup as group:  # one entry per failed check
            for exc in group.exceptions:
                self.failures.append(f"{label}: {response.status_code} {type(exc).__name__}: {str(exc)[:300]}")

    def run(self, op: Any, mode: schemathesis.GenerationMode, n: int) -> None:
        label = f"{op.label} [{mode.value}]"

        @hypothesis.settings(max_examples=n, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=op.as_strategy(generation_mode=mode))
        def one(case: Any) -> None:
            self.send(case, label)

        with contextlib.suppress(hypothesis.errors.Unsatisfiable):  # e.g. no negative case for an input-less op
            one()


def test_fuzz_service_from_its_openapi_document(server: Server, auth: dict[str, str], rel_home, ledger) -> None:
    doc = httpx.get(f"{server.url}/docs.json", headers=auth, timeout=30).json()
    features = rel_home["bundle"].schema["features"]
    schema = schemathesis.openapi.from_dict(typed_rows(doc, features, {"/predict": 20, "/explain": 5}))
    tally = Tally(server.url, auth)
    for result in schema.get_all_operations():
        op = result.ok()
        positive, negative = BUDGET.get(op.path, DEFAULT_BUDGET)
        tally.run(op, schemathesis.GenerationMode.POSITIVE, positive)
        tally.run(op, schemathesis.GenerationMode.NEGATIVE, negative)
    statuses = tally.statuses
    server_errors = sum(v for k, v in statuses.items() if k >= 500)
    ledger.record("fuzz", tried=tally.tried, failures=len(tally.failures), server_errors=server_errors,
                  statuses=dict(sorted(statuses.items())))
    assert tally.tried >= MIN_REQUESTS, f"only {tally.tried} generated requests"
    distinct = {f.split("\n", 1)[0]: f for f in tally.failures}  # one example per operation, status and check
    assert not tally.failures, "\n\n".join(list(distinct.values())[:10])
    # the model path was reached, not only the validators in front of it
    assert statuses[200] >= 50 and statuses[422] >= 10
