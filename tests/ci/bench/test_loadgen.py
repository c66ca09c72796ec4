"""The bench's load generators: percentiles as wrk computes them, both latency kinds, errors, in-flight requests."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ci.bench import loadgen
from ci.bench.loadgen import Record, Sample


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the servers under test
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'[{"label": "benign"}]'
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture(name="http_server")
def fixture_http_server() -> Iterator[ThreadingHTTPServer]:
    """A keep-alive HTTP/1.1 server on loopback answering every POST with `server.status` (200)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.status = 200
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _report(**overrides) -> str:
    raw = {
        "duration_us": 2_000_000,
        "requests": 4,
        "errors": {"connect": 0, "read": 1, "write": 0, "status": 1, "timeout": 0},
        "statuses": {"200": 3, "503": 1},
        "wire": {"900": 2, "1100": 1, "40000": 1},
        "corrected": {"50": 1000, "90": 30000, "99": 40000, "99.9": 40000, "max": 40000, "mean": 9000.5},
        "timed": 1,
    }
    raw.update(overrides)
    return f"Running 2s test @ http://127.0.0.1:1/predict\n{loadgen.MARKER}{json.dumps(raw)}\n"


def test_percentile_uses_wrks_rank_rule():
    """rank = round(p/100 * count + 0.5), C rounding: the 50th of 1..100 is 51, as wrk prints it."""
    histogram = {value: 1 for value in range(1, 101)}
    assert loadgen.percentile(histogram, 50) == 51
    assert loadgen.percentile(histogram, 99) == 100
    assert loadgen.percentile({7: 3}, 99.9) == 7
    assert loadgen.percentile({}, 50) is None


def test_summarize_us_gives_milliseconds():
    """A histogram of microseconds becomes p50/p90/p99/p99.9 and max in milliseconds."""
    summary = loadgen.summarize_us({1000: 980, 5000: 11, 20000: 9})
    assert summary == {"p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 5.0, "p99.9_ms": 20.0, "max_ms": 20.0}
    assert loadgen.summarize_us({})["p99_ms"] is None


def test_parse_wrk_report_reads_both_kinds_and_errors():
    """The script's line gives req/s, wire percentiles (from its histogram), wrk's corrected ones, errors."""
    result = loadgen.parse_wrk_report(_report())
    assert result["rps"] == 2.0
    assert result["wire"]["p50_ms"] == 1.1
    assert result["wire"]["max_ms"] == 40.0
    assert result["corrected"] == {"p50_ms": 1.0, "p90_ms": 30.0, "p99_ms": 40.0, "p99.9_ms": 40.0, "max_ms": 40.0}
    # wrk's `status` error (status > 399) is the 503 already counted from the statuses, not a socket error.
    assert result["socket_errors"] == {"connect": 0, "read": 1, "write": 0, "timeout": 0}
    assert (result["non_2xx"], result["shed"], result["socket"], result["errors"]) == (1, 1, 1, 2)


def test_parse_wrk_report_without_timing_has_no_wire_latency():
    """Without LuaJIT's ffi the script times nothing: wire is None, not zeros."""
    assert loadgen.parse_wrk_report(_report(timed=0, wire={}))["wire"] is None


def test_parse_wrk_report_without_the_line_says_so():
    """wrk output without the script's line (another script, a crash) is a clear error."""
    with pytest.raises(ValueError, match="@@loadgen"):
        loadgen.parse_wrk_report("Running 2s test\nRequests/sec: 10\n")


def test_error_counts_count_every_non_2xx_and_shed_separately():
    """429 and 503 are shed; 4xx/5xx are errors too; socket errors add up."""
    counts = loadgen.error_counts({"200": 10, "429": 2, "503": 1, "500": 4}, {"read": 1, "timeout": 2})
    assert counts == {"non_2xx": 7, "shed": 3, "socket": 3, "errors": 10}


def test_wrk_script_embeds_the_body_and_one_connection_per_thread():
    """The body goes into a Lua long string; the command gives each connection its own thread."""
    script = loadgen.wrk_script('{"rows": [[1.5, 2]]}')
    assert '[==[{"rows": [[1.5, 2]]}]==]' in script
    assert 'string.format("%.17g", v)' in script
    assert loadgen.wrk_command("http://h/p", "s.lua", 8, 2.4)[:4] == ["wrk", "-t8", "-c8", "-d2s"]
    with pytest.raises(ValueError, match="terminator"):
        loadgen.wrk_script('{"x": "]==]"}')


def test_due_times_are_a_constant_rate():
    """200/s for 1 s: 200 requests, 5 ms apart, from the start."""
    due = loadgen.due_times(10.0, 200, 1)
    assert len(due) == 200
    assert due[0] == 10.0
    assert due[1] - due[0] == pytest.approx(0.005)


def test_open_loop_corrected_latency_counts_the_wait_behind_a_stall():
    """A 50 ms stall delays the requests due during it: wire sees one slow request, corrected sees them all."""
    samples = [Sample(due=i * 0.01, sent=i * 0.01, done=i * 0.01 + 0.001, status=200) for i in range(20)]
    samples[10] = Sample(due=0.10, sent=0.10, done=0.151, status=200)  # the stall
    for i in range(11, 15):  # due while it lasted: sent one after the other once it ended
        sent = 0.151 + (i - 11) * 0.001
        samples[i] = Sample(due=i * 0.01, sent=sent, done=sent + 0.001, status=200)
    result = loadgen.summarize_open_loop(samples, seconds=0.2)
    assert result["wire"]["max_ms"] == pytest.approx(51, abs=0.01)
    assert result["wire"]["p90_ms"] == pytest.approx(1.0, abs=0.01)  # one slow request in 20
    assert result["corrected"]["p90_ms"] > 10  # five
    assert result["errors"] == 0
    assert result["rps"] == 100


def test_open_loop_counts_socket_errors():
    """A request that got no answer (status 0) is a socket error and has no latency."""
    samples = [Sample(0.0, 0.0, 0.001, 200), Sample(0.01, 0.01, 0.02, 0)]
    result = loadgen.summarize_open_loop(samples, seconds=1.0)
    assert result["socket"] == 1
    assert result["errors"] == 1
    assert result["wire"]["max_ms"] == 1.0


def test_in_flight_verdict_splits_before_and_after_the_signal():
    """Requests sent before the signal must be answered; those answered after it were in flight."""
    records = [
        Record(sent=1.0, done=1.1, status=200),  # done before the signal
        Record(sent=1.9, done=2.2, status=200),  # in flight, answered
        Record(sent=1.95, done=2.1, status=0, error="ConnectionResetError"),  # in flight, lost
        Record(sent=2.5, done=2.6, status=0, error="ConnectionRefusedError"),  # after: expected to fail
        Record(sent=2.05, done=2.3, status=200),
    ]
    verdict = loadgen.in_flight_verdict(records, signalled=2.0)
    assert verdict == {
        "sent_before": 3,
        "in_flight": 2,
        "in_flight_ok": 1,
        "lost": 1,
        "lost_errors": {"ConnectionResetError": 1},
        "sent_after": 2,
        "answered_after": 1,
    }


def test_parse_head_reads_status_and_headers():
    """Status code and lower-cased headers; anything else is a connection error."""
    status, headers = loadgen.parse_head(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\nConnection: close")
    assert (status, headers["content-length"], headers["connection"]) == (503, "12", "close")
    with pytest.raises(ConnectionError):
        loadgen.parse_head(b"SSH-2.0-OpenSSH")


def test_connection_posts_on_one_keep_alive_socket(http_server):
    """Several POSTs on the same connection each read exactly one whole response."""
    conn = loadgen.Connection("127.0.0.1", http_server.server_port, "/predict", b'{"rows": [[1]]}')
    try:
        assert [conn.post() for _ in range(3)] == [200, 200, 200]
        assert conn.buffer == b""
    finally:
        conn.close()


def test_open_loop_against_a_server(http_server):
    """A short open loop sends at the rate, gets every answer, and reports both kinds."""
    result = loadgen.open_loop("127.0.0.1", http_server.server_port, "/predict", b"{}", rate=100, seconds=0.3)
    assert result["requests"] == 30
    assert result["statuses"] == {"200": 30}
    assert result["corrected"]["p50_ms"] >= result["wire"]["p50_ms"] > 0


def test_closed_loop_records_every_request(http_server):
    """Threads send back to back until stopped; every request is recorded with its status."""
    loop = loadgen.ClosedLoop("127.0.0.1", http_server.server_port, "/predict", b"{}", connections=2)
    loop.start()
    threading.Event().wait(0.2)
    records = loop.stop()
    assert records
    assert all(r.status == 200 and r.done >= r.sent for r in records)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
@pytest.mark.parametrize(("status", "errors"), [(200, 0), (503, "all")])
def test_wrk_runs_the_script_and_reports_both_kinds(http_server, tmp_path, status, errors):
    """The real wrk runs the Lua script: every response is timed (wire), counted by status, and 503s are shed."""
    http_server.status = status
    script = tmp_path / "post.lua"
    script.write_text(loadgen.wrk_script('{"rows": [[1.0]]}'))
    cmd = loadgen.wrk_command(f"http://127.0.0.1:{http_server.server_port}/predict", str(script), 2, 1)
    result = loadgen.parse_wrk_report(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert result["requests"] > 0
    assert result["wire"]["p50_ms"] > 0
    assert result["corrected"]["p50_ms"] > 0
    assert sum(result["statuses"].values()) == result["requests"]
    assert result["errors"] == (result["requests"] if errors == "all" else 0)
    assert result["shed"] == (result["requests"] if status == 503 else 0)
