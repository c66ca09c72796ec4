"""Fixtures for the tracking tier: a real MLflow server, and one `dvc repro` tracked to it.

The repro runs the whole pipeline with the repository's params.yaml (40 epochs: about 20 s here)
in a temporary copy of the project, so what MLflow received can be compared with what DVC wrote.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline import tracking
from tests.tracking.servers import BIN, Server, copy_project, mlflow_server, run, sha256


@dataclass(frozen=True)
class TrackedRepro:
    """A project after one tracked `dvc repro`: where, from which commit and lock, and what it printed."""

    project: Path
    commit: str
    lock_sha256: str  # dvc.lock as committed, before the repro rewrote it
    output: str


@pytest.fixture(scope="session", name="server")
def fixture_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real MLflow server for the session (SQLite and artifacts in a temporary directory), stopped at the end."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture(scope="session", name="client")
def fixture_client(server: Server) -> Any:
    """MLflow's client, talking to the session's server."""
    return tracking.import_mlflow().MlflowClient(tracking_uri=server.uri)


@pytest.fixture(scope="session", name="tracked")
def fixture_tracked(server: Server, tmp_path_factory: pytest.TempPathFactory) -> TrackedRepro:
    """`dvc repro` of a fresh copy of the project with MLFLOW_TRACKING_URI naming the session's server."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    lock_sha256 = sha256(project / "dvc.lock")
    out = run(project, str(BIN / "dvc"), "repro", uri=server.uri)
    if out.returncode != 0:
        pytest.fail(f"tracked `dvc repro` failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}", pytrace=False)
    return TrackedRepro(project, commit, lock_sha256, out.stdout + out.stderr)
