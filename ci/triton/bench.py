"""HTTP against gRPC on one Triton, in one run: `nox -s triton -- --bench` (docs/triton.md#http-vs-grpc).

For each protocol (tritonclient's asyncio clients, `tritonclient.http.aio` and `tritonclient.grpc.aio`),
each concurrency (1, 16 requests in flight) and each request size (1, 64 rows): a warm-up, then
`duration` seconds of back-to-back requests from `concurrency` coroutines of one client. Each request's
latency is timed around `await client.infer(...)`; throughput is requests and rows per second. The
server's statistics extension gives the rows per model execution over the same window: how much
the dynamic batcher merged. The rows are the golden rows (reports/golden.json), repeated.

One client process and the server share the machine: on 2 cores the client's Python is a large
part of what is measured, for both protocols alike. The table says which server and machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ci.project import BUILD_DIR, GOLDEN, main_guard, say, table
from ci.triton import server as triton_server

PROTOCOLS = ("http", "grpc")
CONCURRENCY = (1, 16)
ROWS = (1, 64)
RESULTS = BUILD_DIR / "triton" / "bench.json"


@dataclass(frozen=True)
class Cell:
    """One measurement: a protocol, a concurrency, a request size, and what was seen."""

    protocol: str
    concurrency: int
    rows: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    rows_per_execution: float  # from the server's statistics: the dynamic batcher's merging

    @property
    def requests_per_s(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds

    @property
    def rows_per_s(self) -> float:
        """Rows (Triton's inferences) per second."""
        return self.requests * self.rows / self.seconds


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def render(cells: list[Cell]) -> str:
    """The figures as a plain-text table, one row per cell."""
    headers = ["protocol", "concurrency", "rows/request", "requests/s", "rows/s", "p50 ms", "p99 ms", "rows/execution"]
    rows = [
        [
            c.protocol,
            c.concurrency,
            c.rows,
            f"{c.requests_per_s:,.0f}",
            f"{c.rows_per_s:,.0f}",
            f"{c.p50_ms:.2f}",
            f"{c.p99_ms:.2f}",
            f"{c.rows_per_execution:.1f}",
        ]
        for c in cells
    ]
    return table(rows, headers)


def golden_rows(count: int, golden: Path = GOLDEN) -> Any:
    """`count` rows of float32 features: the golden rows, repeated."""
    import numpy as np

    cases = json.loads(golden.read_text())["cases"]
    rows = np.asarray([case["features"] for case in cases], dtype=np.float32)
    return np.resize(rows, (count, rows.shape[1]))


def counts(url: str, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) of the model, from the statistics extension over HTTP."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()
    return int(stats["inference_count"]), int(stats["execution_count"])


async def measure(server: triton_server.Server, protocol: str, concurrency: int, rows: int, duration: float) -> Cell:
    """Run one cell against `server`: warm up, then `duration` seconds of `concurrency` requests in flight."""
    if protocol == "http":
        import tritonclient.http as module
        import tritonclient.http.aio as aio

        client = aio.InferenceServerClient(server.http_url)
    else:
        import tritonclient.grpc as module
        import tritonclient.grpc.aio as aio

        client = aio.InferenceServerClient(server.grpc_url)
    features = golden_rows(rows)
    inputs = [module.InferInput("features", list(features.shape), "FP32")]
    inputs[0].set_data_from_numpy(features)
    latencies: list[float] = []

    async def worker(until: float, record: bool) -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            await client.infer(server.model_name, inputs)
            if record:
                latencies.append(time.perf_counter() - started)

    try:
        warm_until = time.perf_counter() + min(1.0, duration)
        await asyncio.gather(*(worker(warm_until, False) for _ in range(concurrency)))
        before = counts(server.http_url, server.model_name)
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + duration, True) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        after = counts(server.http_url, server.model_name)
    finally:
        await client.close()
    inferences, executions = after[0] - before[0], after[1] - before[1]
    return Cell(
        protocol=protocol,
        concurrency=concurrency,
        rows=rows,
        requests=len(latencies),
        seconds=seconds,
        p50_ms=percentile(latencies, 50) * 1e3,
        p99_ms=percentile(latencies, 99) * 1e3,
        rows_per_execution=inferences / executions if executions else 0.0,
    )


def machine() -> str:
    """The machine in a few words: CPU model and count."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = (line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line)
        model = next(names, "")
    return f"{os.cpu_count()} CPUs, {model or platform.processor() or platform.machine()}"


def run(server: triton_server.Server, duration: float) -> list[Cell]:
    """Every cell against one running server, in a fixed order; the table is printed and kept in bench.json."""
    cells = []
    for protocol in PROTOCOLS:
        for concurrency in CONCURRENCY:
            for rows in ROWS:
                say(f"{protocol}, concurrency {concurrency}, {rows} row(s) per request, {duration:g} s")
                cells.append(asyncio.run(measure(server, protocol, concurrency, rows, duration)))
    print(f"\nTriton ({server.kind}, platform {server.platform}) on {machine()}; {duration:g} s per row:\n")
    print(render(cells))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {"server": server.kind, "machine": machine(), "duration_s": duration, "cells": [asdict(c) for c in cells]}
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    return cells


def main() -> None:
    """Start a server and measure (`python -m ci.triton.bench [--image] [--duration S]`)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--image", action="store_true", help="the official image instead of the wheel's server")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per cell (default 5)")
    args = parser.parse_args()
    with triton_server.serve("image" if args.image else "wheel") as server:
        run(server, args.duration)


if __name__ == "__main__":
    main_guard(main)
