"""The benchmark's parsers: wrk's output and which history rows are filesystem layers."""

from __future__ import annotations

import pytest

from ci.bench import filesystem_layers, parse_wrk

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:41234/predict
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    25.12ms   30.01ms 285.10ms   95.00%
  Latency Distribution
     50%   20.80ms
     75%   24.00ms
     90%   30.00ms
     99%  285.10ms
  3150 requests in 10.00s, 1.00MB read
  Non-2xx or 3xx responses: 7
Requests/sec:    315.00
Transfer/sec:    102.40KB
"""


def test_parse_wrk_reads_throughput_percentiles_and_errors():
    """req/s, p50, p99 (in ms) and the non-2xx count come from wrk --latency output."""
    assert parse_wrk(WRK_OUTPUT) == {"rps": 315.0, "p50_ms": 20.8, "p99_ms": 285.1, "non_2xx": 7}


def test_parse_wrk_converts_units():
    """Microseconds and seconds are converted to milliseconds; no error line means 0 errors."""
    text = (
        WRK_OUTPUT.replace("20.80ms", "900.00us")
        .replace("285.10ms", "1.20s")
        .replace("  Non-2xx or 3xx responses: 7\n", "")
    )
    result = parse_wrk(text)
    assert result["p50_ms"] == pytest.approx(0.9)
    assert result["p99_ms"] == pytest.approx(1200.0)
    assert result["non_2xx"] == 0


def test_metadata_instructions_make_no_layer():
    """ENV, USER, HEALTHCHECK... rows are dropped; the base import, RUN and COPY rows stay."""
    history = [
        {"created_by": "", "size": 100},
        {"created_by": "ENV LANG=C.UTF-8", "size": 0},
        {"created_by": "/bin/sh -c #(nop)  USER 10001", "size": 0},
        {"created_by": "RUN |1 X=1 /bin/sh -c pip install", "size": 50},
        {"created_by": "COPY build/bento/models /m # buildkit", "size": 5},
        {"created_by": 'HEALTHCHECK &{["CMD"]}', "size": 0},
    ]
    assert [row["size"] for row in filesystem_layers(history)] == [100, 50, 5]
