"""The served OpenAPI document equals the committed snapshot: an API change must be deliberate.

After an intended change, refresh the snapshot with `UPDATE_SNAPSHOTS=1 nox -s test` and commit it.
Every image variant must serve the same document.
"""

from __future__ import annotations

import json
import os

import pytest

from ci.project import ROOT

pytestmark = pytest.mark.container

SNAPSHOT = ROOT / "tests" / "contract" / "snapshots" / "openapi.json"


def normalized(document: dict) -> dict:
    """Drop what changes with every model or build rather than with the API (the version string)."""
    document = json.loads(json.dumps(document))
    document.get("info", {}).pop("version", None)
    return document


def test_openapi_matches_snapshot(client):
    """GET /docs.json, normalized, is byte-for-byte the committed snapshot."""
    response = client.get("/docs.json")
    assert response.status_code == 200
    served = json.dumps(normalized(response.json()), indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(served)
    assert SNAPSHOT.is_file(), "no snapshot yet: run `UPDATE_SNAPSHOTS=1 nox -s test` and commit it"
    assert served == SNAPSHOT.read_text(), "the served API changed: review, then UPDATE_SNAPSHOTS=1 nox -s test"


def test_openapi_documents_predict_and_probes(client):
    """The document lists /predict with its request body, and the health probes."""
    paths = client.get("/docs.json").json()["paths"]
    assert "post" in paths["/predict"]
    assert {"/livez", "/readyz", "/metrics"} <= set(paths)
