"""Load generators for `python -m ci.bench.run`, and the two kinds of latency they report.

- **wire**: from writing a request to reading its whole response, as the client saw it. A closed
  loop (each connection sends its next request only after the previous answer) sends nothing while
  the server stalls, so a 50 ms stall costs one slow sample instead of the many requests users
  would have sent meanwhile: coordinated omission. The wire latency understates the tail.
- **corrected**: the same load with coordinated omission corrected. Two ways, both used:
  - wrk 4's own histogram. After the run, wrk.c calls `stats_correct(latency, T)` with
    T = runtime / (requests per connection) (src/wrk.c, src/stats.c since wrk 4.0.0, "remove
    calibration & improve CO correction"): for every recorded latency L >= 2T it adds L-T, L-2T, ...
    (those > T), as HdrHistogram's recordValueWithExpectedInterval does. wrk prints that histogram
    and hands it to the Lua `done()`; it keeps no uncorrected copy. So WRK_SCRIPT also times every
    request itself (the wire latency) and reads wrk's histogram for the corrected one.
  - an open loop (`open_loop`): requests are due at a fixed rate whatever the answers; latency from
    the time a request was due, not when it could be sent, is corrected by construction.

Only the standard library, and wrk (Debian's wrk 4.1.0 is built with LuaJIT, whose ffi the script uses).
"""

from __future__ import annotations

import gc
import json
import math
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
MARKER = "@@loadgen "  # the one line WRK_SCRIPT's done() prints, followed by JSON
SHED_STATUSES = ("429", "503")  # load shedding: the server refused at once instead of queueing

# wrk pairs request() with response() only per thread, so the bench runs one connection per thread
# (-t N -c N): each thread's `sent_at` then belongs to the one request in flight on its connection.
# LuaJIT's ffi reads CLOCK_MONOTONIC in microseconds (Lua's own clocks are CPU time or seconds).
WRK_SCRIPT = r"""-- Written by ci/bench/loadgen.py for wrk 4, one connection per thread (-t N -c N).
local has_ffi, ffi = pcall(require, "ffi")
local now_us
if has_ffi then
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } loadgen_timespec;
    int clock_gettime(int clk_id, loadgen_timespec *tp);
  ]]
  local ts = ffi.new("loadgen_timespec")
  now_us = function()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
  end
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%(body)s]==]

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

wire = {}      -- this thread's wire latencies: microseconds -> count
statuses = {}  -- this thread's responses: HTTP status -> count
local payload, sent_at

function init(args) payload = wrk.format() end

function request()
  if now_us then sent_at = now_us() end
  return payload
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if sent_at then
    local us = now_us() - sent_at
    wire[us] = (wire[us] or 0) + 1
    sent_at = nil
  end
end

local function object(t)
  local parts = {}
  for k, v in pairs(t) do
    local value = type(v) == "table" and object(v) or string.format("%%.17g", v)
    parts[#parts + 1] = string.format('"%%s":%%s', tostring(k), value)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local all_wire, all_statuses = {}, {}
  for _, thread in ipairs(threads) do
    for us, n in pairs(thread:get("wire")) do all_wire[us] = (all_wire[us] or 0) + n end
    for s, n in pairs(thread:get("statuses")) do all_statuses[s] = (all_statuses[s] or 0) + n end
  end
  local corrected = {max = latency.max, mean = latency.mean}
  for _, p in ipairs({50, 90, 99, 99.9}) do corrected[tostring(p)] = latency:percentile(p) end
  io.write("@@loadgen ", object({
    duration_us = summary.duration, requests = summary.requests, errors = summary.errors,
    statuses = all_statuses, wire = all_wire, corrected = corrected, timed = has_ffi and 1 or 0,
  }), "\n")
end
"""


def wrk_script(body: str) -> str:
    """The Lua script for wrk that POSTs `body` (JSON text) and reports both latency kinds."""
    if "]==]" in body:
        raise ValueError("the request body must not contain the Lua string terminator ]==]")
    return WRK_SCRIPT % {"body": body}


def wrk_command(url: str, script: str, connections: int, seconds: float) -> list[str]:
    """wrk with one connection per thread (WRK_SCRIPT's pairing needs it)."""
    return ["wrk", f"-t{connections}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", script, url]


def percentile(histogram: Mapping[int, int], p: float) -> int | None:
    """The p-th percentile of a {value: count} histogram, with wrk's rank rule (stats_percentile)."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = math.floor((p / 100.0) * total + 0.5 + 0.5)  # wrk: round(p/100 * n + 0.5); C's round(y) = floor(y + 0.5)
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)


def summarize_us(histogram: Mapping[int, int]) -> dict[str, float | None]:
    """p50/p90/p99/p99.9 and max, in milliseconds, of a histogram of microseconds."""
    out: dict[str, float | None] = {}
    for p in PERCENTILES:
        value = percentile(histogram, p)
        out[f"p{p:g}_ms"] = None if value is None else value / 1000
    out["max_ms"] = max(histogram) / 1000 if histogram else None
    return out


def error_counts(statuses: Mapping[str, int], socket_errors: Mapping[str, int]) -> dict[str, int]:
    """Failed requests: every non-2xx answer (shed = 429/503 among them) and every socket error."""
    non_2xx = sum(n for status, n in statuses.items() if not str(status).startswith("2"))
    shed = sum(n for status, n in statuses.items() if str(status) in SHED_STATUSES)
    sockets = sum(socket_errors.values())
    return {"non_2xx": non_2xx, "shed": shed, "socket": sockets, "errors": non_2xx + sockets}


def parse_wrk_report(stdout: str) -> dict:
    """The figures of one wrk run from WRK_SCRIPT's line: req/s, both latency kinds, errors."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise ValueError(f"wrk printed no `{MARKER.strip()}` line: it did not run the bench's script:\n{stdout[-800:]}")
    raw = json.loads(line[len(MARKER) :])
    statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
    # wrk's `status` error is "status > 399", which the statuses already hold; the rest are socket errors.
    socket_errors = {k: int(v) for k, v in raw["errors"].items() if k != "status"}
    wire = {int(k): int(v) for k, v in raw["wire"].items()}
    seconds = raw["duration_us"] / 1e6
    corrected = {f"p{float(k):g}_ms": raw["corrected"][k] / 1000 for k in raw["corrected"] if k not in ("max", "mean")}
    corrected["max_ms"] = raw["corrected"]["max"] / 1000 if raw["requests"] else None
    return {
        "requests": int(raw["requests"]),
        "seconds": seconds,
        "rps": raw["requests"] / seconds if seconds else 0.0,
        "wire": summarize_us(wire) if raw.get("timed") else None,
        "corrected": corrected,
        "statuses": statuses,
        "socket_errors": socket_errors,
        **error_counts(statuses, socket_errors),
    }


# --- A minimal HTTP/1.1 client over one keep-alive socket (the open loop and the SIGTERM check) ---

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})")


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """The bytes of a keep-alive JSON POST."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of a response head (without the blank line)."""
    lines = head.split(b"\r\n")
    match = STATUS_LINE.match(lines[0])
    if not match:
        raise ConnectionError(f"not an HTTP response: {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return int(match.group(1)), headers


class Connection:
    """One keep-alive connection that POSTs a fixed body; `post()` returns the status code.

    Raises OSError (ConnectionError included) when the connection fails or the server closes it.
    """

    def __init__(self, host: str, port: int, path: str, body: bytes, timeout: float = 10.0) -> None:
        self.request = build_request(host, port, path, body)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.closed = False

    def post(self) -> int:
        if self.closed:
            raise ConnectionError("the server closed this connection")
        self.sock.sendall(self.request)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, headers = parse_head(head)
        if "content-length" not in headers:
            raise ConnectionError(f"a {status} response without Content-Length (chunked?): not supported here")
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._fill()
        self.buffer = self.buffer[length:]
        if headers.get("connection", "").lower() == "close":
            self.closed = True
        return status

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-response")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


# --- Open loop at a constant rate ---


def due_times(start: float, rate: float, seconds: float) -> list[float]:
    """When each request of a constant-rate schedule is due: `rate` per second for `seconds`."""
    return [start + i / rate for i in range(int(rate * seconds))]


@dataclass
class Sample:
    """One request of the open loop: when it was due, sent and answered (monotonic seconds)."""

    due: float
    sent: float
    done: float
    status: int  # 0: a socket error


def summarize_open_loop(samples: Iterable[Sample], seconds: float) -> dict:
    """Both latency kinds of an open-loop run: wire = done - sent, corrected = done - due."""
    samples = list(samples)
    answered = [s for s in samples if s.status]
    wire = Counter(round((s.done - s.sent) * 1e6) for s in answered)
    corrected = Counter(round((s.done - s.due) * 1e6) for s in answered)
    statuses = Counter(str(s.status) for s in answered)
    socket_errors = {"socket": len(samples) - len(answered)}
    return {
        "requests": len(samples),
        "seconds": seconds,
        "rps": len(samples) / seconds if seconds else 0.0,
        "wire": summarize_us(wire),
        "corrected": summarize_us(corrected),
        "statuses": dict(statuses),
        "socket_errors": socket_errors,
        **error_counts(statuses, socket_errors),
    }


def wait_until(moment: float, spin: float = 0.0005) -> None:
    """Sleep until `moment` (monotonic), spinning the last `spin` seconds: time.sleep() alone wakes
    ~60 us late, which the corrected latency would count against the server."""
    if (wait := moment - time.monotonic() - spin) > 0:
        time.sleep(wait)
    while time.monotonic() < moment:
        pass


def open_loop(host: str, port: int, path: str, body: bytes, rate: float, seconds: float) -> dict:
    """Send `rate` requests per second on one connection for `seconds`, then summarize.

    A request is sent when due, or as soon as the previous one is answered if that is later (one
    connection: concurrency 1). The collector is off meanwhile so that the client's own pauses do
    not count against the server.
    """
    samples: list[Sample] = []
    conn: Connection | None = Connection(host, port, path, body)  # connected before the clock starts
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.monotonic() + 0.05
        for due in due_times(start, rate, seconds):
            wait_until(due)
            sent = time.monotonic()
            try:
                if conn is None or conn.closed:
                    if conn is not None:
                        conn.close()
                    conn = Connection(host, port, path, body)
                status = conn.post()
            except OSError:
                status = 0
                if conn is not None:
                    conn.close()
                conn = None
            samples.append(Sample(due, sent, time.monotonic(), status))
    finally:
        if conn is not None:
            conn.close()
        if was_enabled:
            gc.enable()
    return summarize_open_loop(samples, seconds)


# --- Closed loop with per-request records (the SIGTERM check needs to know what was in flight) ---


@dataclass
class Record:
    """One request of `ClosedLoop`: sent and finished (monotonic seconds), status or error."""

    sent: float
    done: float
    status: int  # 0: failed (see `error`)
    error: str = ""


@dataclass
class ClosedLoop:
    """`connections` threads, each POSTing back to back on its own keep-alive connection until stopped.

    A thread whose connection fails reconnects; when the server refuses new connections it stops.
    """

    host: str
    port: int
    path: str
    body: bytes
    connections: int = 8
    records: list[Record] = field(default_factory=list, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def start(self) -> None:
        for _ in range(self.connections):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 15.0) -> list[Record]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        return sorted(self.records, key=lambda r: r.sent)

    def _run(self) -> None:
        conn: Connection | None = None
        while not self._stop.is_set():
            if conn is None or conn.closed:
                if conn is not None:
                    conn.close()
                try:
                    conn = Connection(self.host, self.port, self.path, self.body)
                except OSError:
                    return  # the server no longer listens
            sent = time.monotonic()
            try:
                record = Record(sent, 0.0, conn.post())
            except OSError as exc:
                record = Record(sent, 0.0, 0, type(exc).__name__)
                conn.close()
                conn = None
            record.done = time.monotonic()
            with self._lock:
                self.records.append(record)
        if conn is not None:
            conn.close()


def in_flight_verdict(records: Iterable[Record], signalled: float) -> dict:
    """What became of the requests sent before the signal (all must be answered 2xx) and after it."""
    before = [r for r in records if r.sent < signalled]
    after = [r for r in records if r.sent >= signalled]
    in_flight = [r for r in before if r.done >= signalled]
    lost = [r for r in before if not 200 <= r.status < 300]
    return {
        "sent_before": len(before),
        "in_flight": len(in_flight),
        "in_flight_ok": sum(1 for r in in_flight if 200 <= r.status < 300),
        "lost": len(lost),
        "lost_errors": dict(Counter(r.error or str(r.status) for r in lost)),
        "sent_after": len(after),
        "answered_after": sum(1 for r in after if 200 <= r.status < 300),
    }
