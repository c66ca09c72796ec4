"""Fixtures for the compose tier: compose.yaml up on the recorded images, one `dvc repro --force` tracked to its MLflow.

The stack is brought up once for the session (Compose v2, `up --wait`) and torn down at the end with
`down --volumes`, also when a test or the start failed; the teardown then checks that no container,
network or volume of the project is left. The repro runs in a temporary copy of the project, as
tests/tracking does, with MLFLOW_TRACKING_URI naming the stack's MLflow on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ci.compose import stack as compose_stack
from ci.project import UserError
from tests.tracking.servers import BIN, copy_project, run


@dataclass(frozen=True)
class TrackedRepro:
    """A project after one `dvc repro --force` tracked to the stack's MLflow, and what it printed."""

    project: Path
    commit: str
    output: str


@pytest.fixture(scope="session", name="stack")
def fixture_stack() -> Iterator[compose_stack.Stack]:
    """compose.yaml up and healthy; down with its volume afterwards, and nothing of the project left."""
    try:
        stack = compose_stack.Stack.configured()
    except UserError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        stack.up()
    except UserError as exc:
        logs = stack.logs()
        stack.down()
        pytest.fail(f"{exc}\n{logs[-6000:]}", pytrace=False)
    try:
        yield stack
    finally:
        stack.down()
        left = compose_stack.leftovers(stack.docker, stack.project)
        assert not left, f"`docker compose down --volumes` left {left}"


@pytest.fixture(scope="session", name="tracked")
def fixture_tracked(stack: compose_stack.Stack, tmp_path_factory: pytest.TempPathFactory) -> TrackedRepro:
    """`dvc repro --force` of a fresh copy of the project, tracked to the stack's MLflow."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    out = run(project, str(BIN / "dvc"), "repro", "--force", uri=stack.url(compose_stack.TRACKING))
    if out.returncode != 0:
        pytest.fail(f"tracked `dvc repro --force` failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}", pytrace=False)
    return TrackedRepro(project, commit, out.stdout + out.stderr)
