"""Real MLflow tracking servers for the tracking tier, and the pipeline run against them as `dvc repro` runs it.

A server is `mlflow server` from the locked environment (mlflow==3.17.2, requirements.lock) on
127.0.0.1 and a free port, with a SQLite backend and a local artifact store in its own temporary
directory. It runs in a process group of its own, ended when its block exits, which then checks
that no process of the group is left. A project is a temporary copy of this checkout's pipeline
(dvc.yaml, dvc.lock, params.yaml, pipeline/) in a git repository of its own, where a stage or
`dvc repro` runs in a fresh process with MLFLOW_TRACKING_URI set or not.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from ci.processes import free_port, stop_group

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
BIN = Path(sys.executable).parent  # the locked environment: its python, mlflow and dvc
START_TIMEOUT_S = 90  # measured ~6 s; the first start creates the SQLite schema
STOP_TIMEOUT_S = 15
# No job runner (a pool of worker processes for MLflow's GenAI jobs, unused here), no telemetry.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
PROJECT_FILES = ("dvc.yaml", "dvc.lock", "params.yaml", ".gitignore", ".dvcignore", ".dvc/config", "pipeline")
GIT = ["git", "-c", "user.name=tracking-tests", "-c", "user.email=tracking-tests@example.com"]


@dataclass
class Server:
    """A running MLflow server: its URI, its process (the group leader) and its files."""

    uri: str
    process: subprocess.Popen
    directory: Path

    @property
    def log(self) -> Path:
        """What the server printed."""
        return self.directory / "server.log"


def stop(server: Server) -> None:
    """SIGTERM the server's process group, SIGKILL what outlives STOP_TIMEOUT_S; fail if any process is left."""
    left = stop_group(server.process, STOP_TIMEOUT_S)  # start_new_session: the server leads its own group
    assert not left, f"the MLflow server left processes {left} running"


@contextlib.contextmanager
def mlflow_server(directory: Path) -> Iterator[Server]:
    """A ready MLflow server with its database and artifacts under `directory`, stopped when the block exits."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{directory / 'mlflow.db'}",
        "--artifacts-destination",
        str(directory / "artifacts"),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with (directory / "server.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=directory,
            env={**os.environ, **SERVER_ENV},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(uri=f"http://{HOST}:{port}", process=process, directory=directory)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        stop(server)


def wait_until_healthy(server: Server) -> None:
    """Wait for GET /health to answer 200; fail with the server's log when it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"mlflow server exited with {server.process.returncode}:\n{server.log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.uri}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"mlflow server not healthy after {START_TIMEOUT_S} s:\n{server.log.read_text()}")


def copy_project(target: Path) -> Path:
    """This checkout's pipeline (working-tree files, not the last commit) in a new git repository at `target`."""
    for name in PROJECT_FILES:
        source, destination = REPO_ROOT / name, target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination)
    subprocess.run([*GIT, "init", "-q"], cwd=target, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=target, check=True)
    subprocess.run([*GIT, "commit", "-qm", "project under test"], cwd=target, check=True)
    return target


def copy_outputs(source: Path, target: Path, *paths: Path) -> None:
    """Copy DVC outputs (files or directories) from one project to another, at the same paths."""
    for path in paths:
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        if (source / path).is_dir():
            shutil.copytree(source / path, target / path)
        else:
            shutil.copy2(source / path, target / path)


def set_best_effort(project: Path, value: bool) -> None:
    """Set `tracking.best_effort` in the project's params.yaml (its comments kept)."""
    path = project / "params.yaml"
    text, count = re.subn(r"(?m)^(  best_effort:) \w+", rf"\1 {str(value).lower()}", path.read_text())
    assert count == 1, "params.yaml has no `tracking.best_effort` line"
    path.write_text(text)


def run(project: Path, *command: str, uri: str | None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `command` in `project` as `dvc repro` would: the locked environment first on PATH, tracking
    on (MLFLOW_TRACKING_URI = `uri`) or off (None), no other MLFLOW_ setting of the caller's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if uri is not None:
        env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)


def stage(project: Path, name: str, uri: str | None) -> subprocess.CompletedProcess:
    """Run one pipeline stage (`python -m pipeline.<name>`) in `project`."""
    return run(project, str(BIN / "python"), "-m", f"pipeline.{name}", uri=uri)


def sha256(path: Path) -> str:
    """The sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
