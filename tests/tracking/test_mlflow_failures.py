"""A tracking server that is down, answers errors, or dies mid-pipeline: one sentence within seconds,
or (best effort) one warning line, and never a lost DVC output.

Each test runs the real stages (`python -m pipeline.<stage>`, as `dvc repro` runs them) in a fresh
copy of the project that holds the tracked repro's upstream outputs; what a stage writes is compared,
byte for byte, with what the same stage wrote in the tracked repro.
"""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import artifacts, tracking
from tests.tracking.conftest import TrackedRepro
from tests.tracking.servers import HOST, copy_outputs, copy_project, free_port, mlflow_server, set_best_effort, stage

pytestmark = pytest.mark.tracking

# Measured: ~2 s of MLflow's shortened retries after ~2 s of imports. A loaded 2-core machine gets room;
# MLflow's defaults (7 retries, exponential backoff) would take minutes.
FAILS_WITHIN_S = 20
TRAIN_OUTPUTS = (artifacts.MODEL_FILE, artifacts.BASELINE_FILE, artifacts.HISTORY_CSV)
EVALUATE_OUTPUTS = (artifacts.METRICS_JSON, artifacts.CONFUSION_CSV, artifacts.ROC_CSV, artifacts.PR_CSV)


@pytest.fixture(name="project")
def fixture_project(tracked: TrackedRepro, tmp_path: Path) -> Path:
    """A fresh copy of the project with the tracked repro's prepared data, nothing trained yet."""
    project = copy_project(tmp_path / "project")
    copy_outputs(tracked.project, project, artifacts.PREPARED_DIR)
    return project


@pytest.fixture(name="failing_server")
def fixture_failing_server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 that answers 503 to every request: (its URI, the paths it was asked)."""
    requests: list[str] = []

    class Unavailable(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{HOST}:{server.server_port}", requests
    server.shutdown()
    server.server_close()
    thread.join()


def one_sentence_error(stderr: str) -> str:
    """The stage's only stderr line, checked to be `error: ` and one sentence (no traceback)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    (line,) = lines
    assert line.startswith("error: MLflow tracking at "), line
    assert line.endswith("."), line
    assert len(re.findall(r"[.!?](?:\s|$)", line)) == 1, line
    return line


def warning_lines(stderr: str) -> list[str]:
    """The `warning:` lines a stage printed."""
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def same_bytes(first: Path, second: Path, paths: tuple[Path, ...]) -> list[str]:
    """The paths whose files differ (or are missing) between two projects."""
    return [str(p) for p in paths if not (first / p).is_file() or (first / p).read_bytes() != (second / p).read_bytes()]


def test_a_down_server_fails_train_in_one_sentence_within_seconds(project: Path):
    """Nothing listens at the URI: train exits 1 within seconds, before training, with one sentence
    that says what to do; it writes nothing."""
    uri = f"http://{HOST}:{free_port()}"
    start = time.monotonic()
    out = stage(project, "train", uri)
    elapsed = time.monotonic() - start
    assert out.returncode == 1
    assert elapsed < FAILS_WITHIN_S
    line = one_sentence_error(out.stderr)
    assert f"at {uri} failed while creating a run in experiment" in line
    assert "(no connection: connection refused)" in line
    assert "`tracking.best_effort: true`" in line
    assert not (project / "models").exists()
    assert not (project / tracking.STATE_FILE).exists()


def test_a_server_answering_errors_fails_train_in_one_sentence_within_seconds(project: Path, failing_server):
    """A server that answers 503: MLflow's client tries three times, then train fails in one sentence."""
    uri, requests = failing_server
    start = time.monotonic()
    out = stage(project, "train", uri)
    assert out.returncode == 1
    assert time.monotonic() - start < FAILS_WITHIN_S
    assert "(it answered HTTP 503 to every try)" in one_sentence_error(out.stderr)
    assert len(requests) == 1 + int(tracking.CLIENT_ENV["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    assert not (project / "models").exists()


def test_best_effort_trains_with_a_down_server_and_writes_every_output(tracked: TrackedRepro, project: Path):
    """Best effort: one warning line, train goes on, and its outputs are the bytes the tracked train wrote."""
    set_best_effort(project, True)
    out = stage(project, "train", f"http://{HOST}:{free_port()}")
    assert out.returncode == 0, out.stderr
    (warning,) = warning_lines(out.stderr)
    assert "failed while creating a run" in warning
    assert "going on without it" in warning
    assert same_bytes(project, tracked.project, TRAIN_OUTPUTS) == []
    assert not (project / tracking.STATE_FILE).exists()


def test_a_server_that_dies_after_train_never_costs_an_output(tracked: TrackedRepro, project: Path, tmp_path: Path):
    """train logs to a real server, which then stops. evaluate (strict) writes every output, then fails
    in one sentence; package (best effort) writes its outputs, warns once and passes. The card still
    names train's run, which exists."""
    with mlflow_server(tmp_path / "server") as server:
        trained = stage(project, "train", server.uri)
        assert trained.returncode == 0, trained.stderr
        run_id = tracking.read_state(project).run_id
        assert tracking.import_mlflow().MlflowClient(server.uri).get_run(run_id).info.status == "FINISHED"
    # The server is gone (its fixture checked that no process of it is left).
    evaluated = stage(project, "evaluate", server.uri)
    assert evaluated.returncode == 1
    assert "failed while logging the test metrics and plots" in one_sentence_error(evaluated.stderr)
    assert same_bytes(project, tracked.project, (*EVALUATE_OUTPUTS, artifacts.GOLDEN_JSON)) == []

    copy_outputs(tracked.project, project, artifacts.ONNX_FILE)  # export: untracked, and deterministic
    set_best_effort(project, True)
    packaged = stage(project, "package", server.uri)
    assert packaged.returncode == 0, packaged.stderr
    (warning,) = warning_lines(packaged.stderr)
    assert "failed while logging the model and its card" in warning
    assert same_bytes(project, tracked.project, (artifacts.MANIFEST_JSON,)) == []
    assert f"Tracked in MLflow: run `{run_id}`" in (project / artifacts.MODEL_CARD_MD).read_text()
