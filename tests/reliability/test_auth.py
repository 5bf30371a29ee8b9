"""Auth: every endpoint but the health probes refuses a missing, wrong, empty or malformed key with 401.

The protected endpoints are enumerated from the service's own OpenAPI document (plus the document
itself and the Prometheus scrape), each with the method the document gives and, for the POST aliases,
GET too.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from _server import Server

from reliability.conftest import API_KEY

pytestmark = [pytest.mark.server, pytest.mark.slow]

PUBLIC = {"/healthz", "/livez", "/readyz"}

BAD_HEADERS: dict[str, dict[str, Any]] = {
    "missing": {},
    "wrong": {"Authorization": "Bearer wrong-key"},
    "empty": {"Authorization": ""},
    "empty bearer": {"Authorization": "Bearer"},  # a trailing space is stripped on the wire (RFC 9110 OWS)
    "no scheme": {"Authorization": API_KEY},
    "basic scheme": {"Authorization": f"Basic {API_KEY}"},
    "truncated": {"Authorization": f"Bearer {API_KEY[:-1]}"},
    "extended": {"Authorization": f"Bearer {API_KEY}x"},
    "doubled": {"Authorization": f"Bearer {API_KEY} {API_KEY}"},
    "padded": {"Authorization": f"Bearer  {API_KEY}"},
    "non-ascii": {"Authorization": "Bearer ключ".encode()},
    "other header": {"X-API-Key": API_KEY},
}


def endpoints(server: Server, auth: dict[str, str]) -> list[tuple[str, str]]:
    doc = httpx.get(f"{server.url}/docs.json", headers=auth, timeout=30).json()
    out = [(method.upper(), path) for path, ops in doc["paths"].items() for method in ops]
    out += [("GET", "/docs.json"), ("GET", "/metadata"), ("GET", "/drift")]
    return sorted(set(out))


def test_every_protected_endpoint_refuses_bad_keys(server: Server, auth: dict[str, str], rel_home, ledger) -> None:
    routes = endpoints(server, auth)
    protected = [(m, p) for m, p in routes if p not in PUBLIC]
    assert {"/predict", "/predict_file", "/explain", "/metadata", "/drift", "/metrics"} <= {p for _, p in protected}
    row = rel_home["bundle"].example(1)
    tried, wrong = 0, []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for method, path in protected:
            body = {"json": {"rows": row}} if method == "POST" else {}
            for name, headers in BAD_HEADERS.items():
                response = client.request(method, path, headers=headers, **body)
                tried += 1
                ok = (response.status_code == 401 and response.headers.get("www-authenticate") == "Bearer"
                      and response.json().get("field") == "authorization")
                if not ok:
                    wrong.append(f"{method} {path} with {name} key: {response.status_code} {response.text[:120]}")
            # the right key gets through (so the 401s above are about the key, not the request)
            assert client.request(method, path, headers=auth, **body).status_code != 401, (method, path)
        # health probes stay open for the orchestrator
        for path in sorted(PUBLIC):
            assert client.get(path).status_code == 200, path
    ledger.record("auth", tried=tried, failures=len(wrong), endpoints=len(protected), key_variants=len(BAD_HEADERS))
    assert not wrong, "\n".join(wrong)
