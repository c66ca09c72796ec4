"""Fixtures shared by the test tiers that need a Docker engine (contract, registry)."""

from __future__ import annotations

import pytest

from ci.engine import ensure_engine
from ci.project import UserError


@pytest.fixture(scope="session", name="docker")
def fixture_docker() -> str:
    """The docker CLI, with an engine running (started here when none answers and we may)."""
    try:
        return ensure_engine()
    except UserError as exc:
        pytest.fail(str(exc))
