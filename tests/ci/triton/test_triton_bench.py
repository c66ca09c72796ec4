"""ci/triton/bench.py's arithmetic and table, and what `nox -s triton` hands pytest."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ci.project import UserError
from ci.triton import bench, run


def test_percentile_is_nearest_rank():
    """p50 and p99 of 1..100 are 50 and 99; one value is every percentile; none is 0."""
    values = [float(v) for v in range(100, 0, -1)]
    assert (bench.percentile(values, 50), bench.percentile(values, 99), bench.percentile(values, 100)) == (50, 99, 100)
    assert bench.percentile([3.0], 99) == 3.0
    assert bench.percentile([], 50) == 0.0


def test_a_cell_counts_requests_and_rows_per_second():
    """Throughput in requests and in rows (Triton's inferences): 64-row requests carry 64 rows each."""
    cell = bench.Cell("grpc", 16, 64, requests=1000, seconds=2.0, p50_ms=1.0, p99_ms=3.0, rows_per_execution=64.0)
    assert (cell.requests_per_s, cell.rows_per_s) == (500.0, 32000.0)


def test_the_table_has_a_row_per_cell_with_every_figure():
    """One line per cell, with protocol, concurrency, rows, both throughputs, both latencies and the batching."""
    cells = [
        bench.Cell("http", 1, 1, 3000, 3.0, 0.3, 0.8, 1.0),
        bench.Cell("grpc", 16, 64, 12000, 3.0, 3.0, 10.6, 64.0),
    ]
    lines = bench.render(cells).splitlines()
    assert lines[0].split() == [
        "protocol", "concurrency", "rows/request", "requests/s", "rows/s", "p50", "ms", "p99", "ms", "rows/execution"
    ]  # fmt: skip
    assert lines[2].split() == ["http", "1", "1", "1,000", "1,000", "0.30", "0.80", "1.0"]
    assert lines[3].split() == ["grpc", "16", "64", "4,000", "256,000", "3.00", "10.60", "64.0"]


def test_golden_rows_are_repeated_to_the_request_size(tmp_path: Path):
    """A 64-row request is the golden rows over and over, as float32."""
    golden = tmp_path / "golden.json"
    golden.write_text(json.dumps({"cases": [{"features": [1.0] * 30}, {"features": [2.0] * 30}]}))
    rows = bench.golden_rows(5, golden)
    assert rows.shape == (5, 30)
    assert str(rows.dtype) == "float32"
    assert rows[:, 0].tolist() == [1.0, 2.0, 1.0, 2.0, 1.0]


@pytest.fixture(name="calls")
def fixture_calls(monkeypatch: pytest.MonkeyPatch) -> list:
    """subprocess.run as run.py calls it, recorded (exit code 0) instead of starting pytest."""
    calls = []

    def fake(command, **kwargs):
        calls.append((command, kwargs["env"]))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(run.subprocess, "run", fake)
    return calls


def test_the_session_runs_the_triton_tests_against_the_server_asked_for(calls):
    """`nox -s triton -- --image -k grpc`: pytest on tests/triton, marker triton, TRITON_SERVER=image, -k passed on."""
    run.main(["--image", "-k", "grpc"])
    ((command, env),) = calls
    assert command[1:5] == ["-m", "pytest", "tests/triton", "-m"]
    assert command[5] == "triton"
    assert command[-2:] == ["-k", "grpc"]
    assert "--junitxml=build/test-results/triton-image.xml" in command
    assert env["TRITON_SERVER"] == "image"
    run.main([])
    assert calls[1][1]["TRITON_SERVER"] == "wheel"


def test_failed_tests_end_the_session_in_one_sentence(monkeypatch: pytest.MonkeyPatch):
    """A pytest failure is a UserError naming its exit code; the bench does not run."""
    monkeypatch.setattr(run.subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(command, 1))
    monkeypatch.setattr(run.server, "serve", lambda kind: pytest.fail("the bench ran after failed tests"))
    with pytest.raises(UserError, match=r"the Triton tests failed \(pytest exit code 1\)"):
        run.main(["--bench"])
