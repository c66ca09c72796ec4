"""Benchmark a built image against its goals; every figure comes from this one run, printed side by side.

Sections, each ending in a table of its goals (PASS, MISS for a performance goal not met, FAIL for
a functional check that failed):

- size: the image per layer, and its floor (the bytes of the files the running service loads);
- start: cold start, `docker run` to the first 200 from /readyz;
- load: the service and a bare Starlette + uvicorn server of the same model.onnx (ci/bench/baseline.py,
  in a container of the same image) on the same CPUs, taking turns at each point: an open loop at a
  fixed rate on one connection, then wrk at 1, 8 and 32 connections; median of `--rounds` rounds;
  ratios to the baseline; the worker's longest garbage-collection pause;
- soak: concurrency 8 for `--soak-seconds`; errors and resident-memory growth;
- shutdown: SIGTERM while requests are in flight; they must complete, the container must exit;
- read-only: the image under `docker run --read-only` (tmpfs where BentoML writes) serves the
  golden cases correctly;
- rebuilds: no-op and model-only (a changed model.onnx) rebuild times and reused layers.

Two kinds of latency are reported and named everywhere (ci/bench/loadgen.py says how each is measured):
"wire" is what a closed-loop client saw per request; "corrected" is corrected for coordinated
omission. Writes build/bench.json (everything) and build/bench.md (docs/figures.md's tables).
Exit code 0 when every functional check passed (a missed performance goal is reported, not fatal);
1 when one failed (errors under load, requests lost at SIGTERM, a wrong answer read-only) or the
bench could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from ci.bench import loadgen
from ci.engine import apt_install, ensure_engine
from ci.image.build import VARIANTS
from ci.processes import free_port
from ci.project import (
    BUILD_DIR,
    GOLDEN,
    MANIFEST,
    ROOT,
    SERVED_MODEL,
    UserError,
    human_bytes,
    main_guard,
    say,
    step,
    table,
)
from ci.records import image_path, load_image
from pipeline.package import model_version

# The goals (issue 8). Sizes in decimal units, as registries and `docker images` show them.
CPU_IMAGE_MAX_BYTES = 400e6
FLOOR_RATIO_MAX = 1.15
CUDA_IMAGE_MAX_BYTES = 2.5e9
COLD_START_MAX_S = 1.5
P99_C1_MAX_MS = 5.0
PAUSE_MAX_MS = 20.0
C32_RPS_MIN_RATIO = 0.5
C32_P99_MAX_RATIO = 3.0
SOAK_RSS_GROWTH_MAX = 0.10
SIGTERM_EXIT_MAX_S = 10.0
CLEAN_EXIT_CODES = (0, 143)  # 143 = 128 + SIGTERM: the process ended on the signal, not on SIGKILL (137)

# The load points, in the order they run: the open loop first (the concurrency-1 latency goal),
# then wrk's closed loops.
POINTS = (("open1", 1), ("c1", 1), ("c8", 8), ("c32", 32))
SOAK_CONNECTIONS = 8
SIGTERM_CONNECTIONS = 8
RSS_SAMPLE_EVERY_S = 60
READY_TIMEOUT_S = 120
GOLDEN_TOLERANCE = 1e-4  # as tests/contract/test_predict.py: the pipeline's golden values come from Keras
BASELINE_IN_IMAGE = "/bench/baseline.py"
VENV = "/opt/venv"
BENTO_IN_IMAGE = "/home/bentoml/bento"
GC_MAX_METRIC = "classifier_gc_pause_max_seconds"
GC_COUNT_METRIC = "classifier_gc_pause_seconds_count"

# Run inside the image: load the Bento the way `bentoml serve` does (bentoml.load: its model store,
# its service), import the modules the server adds, call the service's predict API once, then list
# every file the process has loaded and sum them by owner. Loaded means: the bytecode of each Python
# module (the .pyc the image compiled; the source only when there is none), every file mapped into
# memory (extension modules, shared libraries, the interpreter) and the Bento's model store. Sources
# of loaded modules are summed apart: tracebacks read them, the running service does not.
FLOOR_PROBE = r"""
import asyncio, importlib, importlib.metadata as md, inspect, json, os, sys, sysconfig
bento, row, venv = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
import bentoml
svc = bentoml.load(bento)
instance = svc.inner()
result = instance.predict([row])
if inspect.isawaitable(result):
    result = asyncio.run(result)
missing = []
for name in ("bentoml_cli.cli", "bentoml_cli.serve", "_bentoml_impl.server.app", "_bentoml_impl.server.serving",
             "_bentoml_impl.worker.service", "circus.arbiter", "uvicorn.main", "prometheus_client.multiprocess"):
    try:
        importlib.import_module(name)
    except Exception as exc:
        missing.append(f"{name}: {type(exc).__name__}")
real = os.path.realpath
loaded, sources = set(), set()
for module in list(sys.modules.values()):
    source, cached = getattr(module, "__file__", None), getattr(module, "__cached__", None)
    if cached and os.path.isfile(cached):
        loaded.add(real(cached))
        if source and os.path.isfile(source) and source.endswith(".py"):
            sources.add(real(source))
    elif source and os.path.isfile(source):
        loaded.add(real(source))
for line in open("/proc/self/maps"):
    parts = line.split()
    if len(parts) >= 6 and parts[5].startswith("/") and os.path.isfile(parts[5]):
        loaded.add(real(parts[5]))
for directory, _, names in os.walk(os.path.join(bento, "models")):
    loaded |= {real(os.path.join(directory, name)) for name in names}
owner = {}
for dist in md.distributions():
    for f in dist.files or []:
        owner[real(str(dist.locate_file(f)))] = dist.metadata["Name"]
stdlib = real(sysconfig.get_paths()["stdlib"]) + os.sep
def category(path):
    if path in owner:
        return owner[path]
    if path.startswith(real(os.path.join(bento, "models")) + os.sep):
        return "model"
    if path.startswith(real(bento) + os.sep):
        return "service code"
    return "Python standard library" if path.startswith(stdlib) else "system libraries"
by = {}
for path in loaded:
    by[category(path)] = by.get(category(path), 0) + os.path.getsize(path)
venv_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(venv) for f in fs
                 if os.path.isfile(os.path.join(d, f)) and not os.path.islink(os.path.join(d, f)))
result = {"loaded_by_package": by, "files": len(loaded), "sources_bytes": sum(map(os.path.getsize, sources)),
          "venv_bytes": venv_bytes, "not_importable": missing}
print("@@floor " + json.dumps(result), flush=True)
"""
# Resident memory of every process in the container, but this probe itself (run with docker exec).
RSS_PROBE = r"""
import os
total = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue
    try:
        with open(f"/proc/{pid}/status") as status:
            total += sum(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
    except OSError:
        pass
print(total)
"""


# --- Pure helpers: what the tests exercise ---


@dataclass(frozen=True)
class Verdict:
    """One goal or check: what it asks, what was measured, and PASS / MISS / FAIL / n/a."""

    section: str
    goal: str
    target: str
    measured: str
    status: str
    functional: bool = False  # a failed functional check makes the bench exit 1; a missed goal does not


def _status(ok: bool | None, functional: bool = False) -> str:
    if ok is None:
        return "n/a"
    if ok:
        return "PASS"
    return "FAIL" if functional else "MISS"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _get(data: dict | None, *keys: str):
    """data[k1][k2]..., or None when any step is missing."""
    for key in keys:
        if not isinstance(data, dict) or data.get(key) is None:
            return None
        data = data[key]
    return data


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _check(value: float | None, ok: Callable[[float], bool]) -> bool | None:
    return None if value is None else bool(ok(value))


def evaluate(figures: dict) -> list[Verdict]:
    """Every goal and functional check of one bench run, from its figures (build/bench.json's shape).

    A section that did not run (None) gives n/a, never PASS.
    """
    cpu, cuda = (figures.get("sizes") or {}).get("cpu"), (figures.get("sizes") or {}).get("cuda")
    floor = _get(figures, "floor", "loaded_bytes") if figures.get("variant") == "cpu" else None
    floor_ratio = _ratio(cpu, floor)
    starts = figures.get("cold_start_s") or []
    start = statistics.median(starts) if starts else None
    service, baseline = _get(figures, "load", "service") or {}, _get(figures, "load", "baseline") or {}
    p99_c1, wire_c1 = _get(service, "open1", "corrected", "p99_ms"), _get(service, "open1", "wire", "p99_ms")
    pause = _get(figures, "pauses", "service", "longest_s")
    pause_ms = None if pause is None else pause * 1000
    rps, base_rps = _get(service, "c32", "rps"), _get(baseline, "c32", "rps")
    p99, base_p99 = _get(service, "c32", "corrected", "p99_ms"), _get(baseline, "c32", "corrected", "p99_ms")
    rps_ratio, p99_ratio = _ratio(rps, base_rps), _ratio(p99, base_p99)
    errors = sum(point.get("errors", 0) for point in service.values()) if service else None
    shed = sum(point.get("shed", 0) for point in service.values())
    soak, term, read_only = figures.get("soak"), figures.get("sigterm"), figures.get("read_only")
    rss = _get(soak, "rss_growth")
    exit_s = _get(term, "exit_s")
    exited = None if term is None else exit_s is not None and exit_s <= SIGTERM_EXIT_MAX_S
    codes = " or ".join(map(str, CLEAN_EXIT_CODES))

    def verdict(section: str, goal: str, target: str, ok: bool | None, measured: str, functional=False) -> Verdict:
        return Verdict(section, goal, target, measured, _status(ok, functional), functional)

    return [
        verdict(
            "size",
            "CPU image size",
            f"<= {CPU_IMAGE_MAX_BYTES / 1e6:.0f} MB",
            _check(cpu, lambda v: v <= CPU_IMAGE_MAX_BYTES),
            "not built" if cpu is None else f"{cpu / 1e6:.0f} MB",
        ),
        verdict(
            "size",
            "CPU image / its floor",
            f"<= {FLOOR_RATIO_MAX:.2f}x",
            _check(floor_ratio, lambda v: v <= FLOOR_RATIO_MAX),
            "n/a" if floor_ratio is None else f"{floor_ratio:.2f}x ({cpu / 1e6:.0f} / {floor / 1e6:.0f} MB)",
        ),
        verdict(
            "size",
            "CUDA image size",
            f"<= {CUDA_IMAGE_MAX_BYTES / 1e9:.1f} GB",
            _check(cuda, lambda v: v <= CUDA_IMAGE_MAX_BYTES),
            "not built" if cuda is None else f"{cuda / 1e9:.2f} GB",
        ),
        verdict(
            "start",
            f"cold start to ready (median of {len(starts)})",
            f"<= {COLD_START_MAX_S} s",
            _check(start, lambda v: v <= COLD_START_MAX_S),
            "n/a" if start is None else f"{start:.2f} s",
        ),
        verdict(
            "load",
            "p99 at concurrency 1, corrected",
            f"<= {P99_C1_MAX_MS:g} ms",
            _check(p99_c1, lambda v: v <= P99_C1_MAX_MS),
            f"{_ms(p99_c1)} (open loop at {_get(figures, 'load', 'rate')}/s; wire {_ms(wire_c1)})",
        ),
        verdict(
            "load",
            "longest pause of the worker (GC)",
            f"<= {PAUSE_MAX_MS:g} ms",
            _check(pause_ms, lambda v: v <= PAUSE_MAX_MS),
            "not exported" if pause_ms is None else _ms(pause_ms),
        ),
        verdict(
            "load",
            "throughput at concurrency 32 / baseline",
            f">= {C32_RPS_MIN_RATIO:g}x",
            _check(rps_ratio, lambda v: v >= C32_RPS_MIN_RATIO),
            "n/a" if rps_ratio is None else f"{rps_ratio:.2f}x ({rps:.0f} / {base_rps:.0f} req/s)",
        ),
        verdict(
            "load",
            "p99 at concurrency 32 / baseline, corrected",
            f"<= {C32_P99_MAX_RATIO:g}x",
            _check(p99_ratio, lambda v: v <= C32_P99_MAX_RATIO),
            "n/a" if p99_ratio is None else f"{p99_ratio:.2f}x ({_ms(p99)} / {_ms(base_p99)})",
        ),
        verdict(
            "load",
            "errors at every load point",
            "0",
            _check(errors, lambda v: v == 0),
            "n/a" if errors is None else f"{errors} (shed: {shed})",
            functional=True,
        ),
        verdict(
            "soak",
            "errors in the soak",
            "0",
            None if soak is None else soak["errors"] == 0,
            "skipped" if soak is None else f"{soak['errors']} in {soak['requests']} requests",
            functional=True,
        ),
        verdict(
            "soak",
            "resident memory growth in the soak",
            f"< {SOAK_RSS_GROWTH_MAX:.0%}",
            _check(rss, lambda v: v < SOAK_RSS_GROWTH_MAX),
            "skipped"
            if rss is None
            else f"{rss:+.1%} ({human_bytes(soak['rss_start'])} -> {human_bytes(soak['rss_end'])})",
        ),
        verdict(
            "shutdown",
            "requests in flight at SIGTERM complete",
            "0 lost",
            None if term is None else term["lost"] == 0,
            "n/a"
            if term is None
            else f"{term['lost']} lost of {term['sent_before']} sent before it ({term['in_flight']} in flight)",
            functional=True,
        ),
        verdict(
            "shutdown",
            "exit after SIGTERM",
            f"<= {SIGTERM_EXIT_MAX_S:g} s, code {codes}",
            None if term is None else bool(exited and term["exit_code"] in CLEAN_EXIT_CODES),
            "n/a"
            if term is None
            else ("did not exit" if exit_s is None else f"{exit_s:.1f} s, code {term['exit_code']}"),
            functional=True,
        ),
        verdict(
            "read-only",
            "serves the golden cases with --read-only",
            "correct answers",
            None if read_only is None else read_only["ok"],
            "n/a" if read_only is None else ("correct" if read_only["ok"] else "; ".join(read_only["problems"])[:200]),
            functional=True,
        ),
    ]


def failed(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """The functional checks that failed: any makes the bench exit 1."""
    return [v for v in verdicts if v.functional and v.status == "FAIL"]


_SUMMED = ("requests", "errors", "non_2xx", "shed", "socket")


def median_of_rounds(results: Sequence[dict]) -> dict:
    """One load point's figure over rounds: the median of rates and latencies, the sum of counts."""
    out: dict = {"rounds": len(results)}
    for key in ("rps", "seconds"):
        out[key] = statistics.median(r[key] for r in results)
    for key in _SUMMED:
        out[key] = sum(r.get(key, 0) for r in results)
    for kind in ("wire", "corrected"):
        present = [r[kind] for r in results if r.get(kind)]
        out[kind] = (
            {
                name: (statistics.median(vals) if (vals := [p[name] for p in present if p[name] is not None]) else None)
                for name in present[0]
            }
            if present
            else None
        )
    for key in ("statuses", "socket_errors"):
        total: Counter = Counter()
        for r in results:
            total.update(r.get(key) or {})
        out[key] = dict(total)
    if gcs := [r["gc_longest_s"] for r in results if r.get("gc_longest_s") is not None]:
        out["gc_longest_s"] = max(gcs)
    return out


def prometheus_samples(text: str) -> list[tuple[str, str, float]]:
    """(name, labels, value) of each sample line of Prometheus text; comments and junk skipped."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name_end = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=-1)
        if name_end <= 0:
            continue
        name = line[:name_end]
        labels = ""
        rest = line[name_end:]
        if rest.startswith("{"):
            close = rest.find("}")
            labels, rest = rest[1:close], rest[close + 1 :]
        fields = rest.split()
        if not fields:
            continue
        try:
            samples.append((name, labels, float(fields[0])))
        except ValueError:
            continue
    return samples


def gc_pauses_from_metrics(text: str) -> dict:
    """The service's longest GC pause (seconds) and number of collections, from /metrics; None if absent.

    The longest: the largest sample of any metric whose name starts with classifier_gc_pause_max_seconds
    (whatever suffix or labels the exposition adds). The count: classifier_gc_pause_seconds_count, summed.
    """
    samples = prometheus_samples(text)
    longest = [v for n, _, v in samples if n.startswith(GC_MAX_METRIC) and not n.endswith("_created")]
    counts = [v for n, _, v in samples if n == GC_COUNT_METRIC]
    return {"longest_s": max(longest) if longest else None, "collections": int(sum(counts)) if counts else None}


def pin_plan(cpus: Sequence[int], enabled: bool = True) -> dict:
    """Which CPUs the servers (both, the same) and the load generators get.

    With two CPUs or more: the first for the servers (`docker run --cpuset-cpus`), the rest for
    wrk and the Python generators (sched_setaffinity), so the client never takes the server's CPU.
    """
    cpus = sorted(cpus)
    if not enabled or len(cpus) < 2:
        why = "--no-pin" if not enabled else "one CPU"
        return {"servers": None, "generator": None, "text": f"nothing pinned ({why}): servers and load share the CPUs"}
    servers, generator = str(cpus[0]), cpus[1:]
    return {
        "servers": servers,
        "generator": generator,
        "text": f"service and baseline on CPU {servers} (docker --cpuset-cpus {servers}, both the same); "
        f"load generators on CPU {','.join(map(str, generator))}",
    }


def read_only_mounts(bentoml_home: str) -> list[str]:
    """Where the service writes, each a tmpfs under `docker run --read-only` (from BentoML 1.4's source).

    BENTOML_HOME's bentos, models, envs and tmp (created at start when absent: the
    bentoml_home() provider) and prometheus_multiproc_dir (emptied at start: ensure_prometheus_dir),
    and /tmp (the arbiter's socket directory: tempfile.mkdtemp).
    """
    home = bentoml_home.rstrip("/")
    return ["/tmp", *(f"{home}/{name}" for name in ("bentos", "models", "envs", "tmp", "prometheus_multiproc_dir"))]


def uncovered_writes(diff: str, mounts: Sequence[str]) -> list[str]:
    """Paths `docker diff` shows written (added, deleted or changed files) outside every mount.

    A changed (C) path that is the parent of another listed path is a directory holding a change,
    not a write of its own.
    """
    entries = [(line[:1], line[2:].strip()) for line in diff.splitlines() if line[1:2] == " "]
    paths = [path for _, path in entries]
    writes = [
        path
        for kind, path in entries
        if kind in ("A", "D") or (kind == "C" and not any(other.startswith(path.rstrip("/") + "/") for other in paths))
    ]

    def covered(path: str) -> bool:
        return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)

    return sorted(path for path in writes if not covered(path))


def golden_problems(predictions: object, golden: dict, version: str) -> list[str]:
    """Differences between the service's answers and the golden cases (empty: correct)."""
    cases = golden["cases"]
    if not isinstance(predictions, list) or len(predictions) != len(cases):
        return [f"expected {len(cases)} predictions, got {str(predictions)[:120]}"]
    problems = []
    for i, (case, got) in enumerate(zip(cases, predictions, strict=True)):
        if got.get("label") != case["expected_label"]:
            problems.append(f"case {i}: label {got.get('label')!r}, expected {case['expected_label']!r}")
        if got.get("model_version") != version:
            problems.append(f"case {i}: model_version {got.get('model_version')!r}, expected {version!r}")
        for name, expected in case["probabilities"].items():
            value = (got.get("probabilities") or {}).get(name)
            if value is None or abs(value - expected) > GOLDEN_TOLERANCE:
                problems.append(f"case {i}: p({name}) = {value}, expected {expected} +- {GOLDEN_TOLERANCE}")
    return problems


def growth(start: float, end: float) -> float:
    """Relative growth from start to end (0.1 = 10%)."""
    return (end - start) / start if start else 0.0


def perturbed_onnx(data: bytes) -> bytes:
    """The same ONNX model with one float of its last float initializer moved to the next float32.

    A different artifact (new hash, new model layer), predictions unchanged in any digit that matters.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    floats = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) > 0]
    if not floats:
        raise UserError("the ONNX model has no float initializer to perturb for the model-only rebuild.")
    tensor = floats[-1]
    values = numpy_helper.to_array(tensor).copy()
    flat = values.reshape(-1)
    flat[0] = np.nextafter(flat[0], np.float32(np.inf), dtype=np.float32)
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    return model.SerializeToString()


METADATA_ONLY = (
    "ENV",
    "ARG",
    "USER",
    "EXPOSE",
    "HEALTHCHECK",
    "ENTRYPOINT",
    "CMD",
    "LABEL",
    "STOPSIGNAL",
    "SHELL",
    "VOLUME",
    "ONBUILD",
    "MAINTAINER",
)


def filesystem_layers(history: list[dict]) -> list[dict]:
    """The history rows that made a filesystem layer (metadata instructions make none), oldest first."""

    def keyword(row: dict) -> str:
        text = row["created_by"].replace("/bin/sh -c #(nop)", "").strip()
        return text.split(" ", 1)[0].upper() if text else ""

    return [row for row in history if keyword(row) not in METADATA_ONLY]


# --- Containers ---


def _docker(docker: str, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run([docker, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"`docker {args[0]}` took more than {timeout} s during the benchmark.") from exc
    if proc.returncode != 0:
        raise UserError(f"`docker {args[0]}` failed during the benchmark: {proc.stderr.strip()[-1500:]}")
    return proc


@dataclass
class Server:
    """A container of the image under test, on the host's loopback (no docker-proxy in the path)."""

    docker: str
    kind: str  # "service" or "baseline"
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self, tail: int = 3000) -> str:
        proc = subprocess.run([self.docker, "logs", self.name], capture_output=True, text=True)
        return (proc.stdout + proc.stderr)[-tail:]

    def running(self) -> bool:
        proc = subprocess.run(
            [self.docker, "inspect", "-f", "{{.State.Running}}", self.name], capture_output=True, text=True
        )
        return proc.stdout.strip() == "true"

    def pauses(self) -> dict:
        """The worker's longest GC pause and collections so far (the service: /metrics; the baseline: /gcmax)."""
        try:
            if self.kind == "baseline":
                return httpx.get(f"{self.url}/gcmax", timeout=5).json()
            return gc_pauses_from_metrics(httpx.get(f"{self.url}/metrics", timeout=5).text)
        except httpx.HTTPError:
            return {"longest_s": None, "collections": None}


class Containers:
    """Starts the bench's containers and removes every one of them at the end, whatever happens."""

    def __init__(self, docker: str, ref: str, cpuset: str | None) -> None:
        self.docker, self.ref, self.cpuset = docker, ref, cpuset
        self.names: list[str] = []

    def __enter__(self) -> Containers:
        return self

    def __exit__(self, *_exc: object) -> None:
        for name in self.names:
            subprocess.run([self.docker, "rm", "-f", name], capture_output=True)

    def remove(self, server: Server) -> None:
        subprocess.run([self.docker, "rm", "-f", server.name], capture_output=True)

    def start(self, kind: str, *, extra: Sequence[str] = ()) -> Server:
        """Run the service (the image's entrypoint) or the baseline (ci/bench/baseline.py) and wait until ready."""
        port = free_port()
        name = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
        args = ["run", "-d", "--name", name, "--network", "host", *extra]
        if self.cpuset:
            args += ["--cpuset-cpus", self.cpuset]
        if kind == "baseline":
            script = ROOT / "ci" / "bench_baseline.py"
            args += ["--entrypoint", f"{VENV}/bin/python", "-v", f"{script}:{BASELINE_IN_IMAGE}:ro"]
            args += [self.ref, BASELINE_IN_IMAGE, "--host", "127.0.0.1", "--port", str(port)]
        else:
            args += ["-e", f"BENTOML_PORT={port}", "-e", "BENTOML_HOST=127.0.0.1", self.ref]
        self.names.append(name)
        _docker(self.docker, *args)
        server = Server(self.docker, kind, name, port)
        wait_ready(server)
        return server


def wait_ready(server: Server, timeout: float = READY_TIMEOUT_S) -> None:
    """Until /readyz answers 200; a container that exits or never gets ready is one clear error."""
    deadline = time.monotonic() + timeout
    checked = 0.0
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() - checked > 1:
            checked = time.monotonic()
            if not server.running():
                raise UserError(f"the {server.kind} container exited before it was ready:\n{server.logs()}")
        time.sleep(0.1)
    raise UserError(f"the {server.kind} container was not ready within {timeout} s:\n{server.logs()}")


@contextlib.contextmanager
def generator_cpus(cpus: Sequence[int] | None) -> Iterator[None]:
    """Run this process (and wrk, its child) on `cpus` meanwhile; None leaves the affinity alone."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# --- Measurements ---


def measure_floor(docker: str, record: dict, row: list[float]) -> dict:
    """Bytes of files the running service loads, by package, versus what the image ships."""
    proc = _docker(
        docker,
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        f"{VENV}/bin/python",
        record["ref"],
        "-c",
        FLOOR_PROBE,
        BENTO_IN_IMAGE,
        json.dumps(row),
        VENV,
        timeout=300,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@floor ")), None)
    if line is None:
        raise UserError(f"the floor probe printed no result:\n{(proc.stdout + proc.stderr)[-1500:]}")
    result = json.loads(line.removeprefix("@@floor "))
    result["loaded_bytes"] = sum(result["loaded_by_package"].values())
    return result


def cold_start(docker: str, record: dict, runs: int = 3) -> list[float]:
    """Seconds from `docker run` (port published, as a user runs it) to the first 200 from /readyz."""
    times = []
    for _ in range(runs):
        start = time.monotonic()
        name = f"bench-cold-{uuid.uuid4().hex[:8]}"
        _docker(docker, "run", "-d", "--name", name, "-p", f"127.0.0.1::{record['port']}", record["ref"])
        try:
            port = _docker(docker, "port", name, str(record["port"])).stdout.split(":")[-1].strip()
            while time.monotonic() - start < READY_TIMEOUT_S:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
            else:
                raise UserError(f"the image was not ready within {READY_TIMEOUT_S} s: run `nox -s test` to see why.")
            times.append(time.monotonic() - start)
        finally:
            subprocess.run([docker, "rm", "-f", name], capture_output=True)
    return times


def run_wrk(server: Server, script: Path, connections: int, seconds: float) -> dict:
    """One wrk run against a server's /predict, parsed (both latency kinds, errors)."""
    cmd = loadgen.wrk_command(f"{server.url}/predict", str(script), connections, seconds)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if proc.returncode != 0:
        raise UserError(f"wrk failed against the {server.kind}: {(proc.stderr or proc.stdout).strip()[-800:]}")
    return loadgen.parse_wrk_report(proc.stdout)


def measure_point(server: Server, key: str, connections: int, args: argparse.Namespace, load: dict) -> dict:
    """One load point against one server, and the worker's longest pause so far after it."""
    if key == "open1":
        body = load["body"].encode()
        result = loadgen.open_loop("127.0.0.1", server.port, "/predict", body, args.rate, args.seconds)
    else:
        result = run_wrk(server, load["script"], connections, args.seconds)
    result["gc_longest_s"] = server.pauses().get("longest_s")
    return result


def load_test(containers: Containers, args: argparse.Namespace, load: dict, pin: dict) -> tuple[Server, dict, dict]:
    """Service and baseline side by side: both warm, taking turns at every point, `args.rounds` times.

    Returns the service's container (kept running for the soak and the SIGTERM check), the medians
    per server and point (with every round kept), and each server's longest pause over the run.
    """
    service = containers.start("service")
    baseline = containers.start("baseline")
    servers = {"service": service, "baseline": baseline}
    rounds: dict[str, dict[str, list]] = {who: {key: [] for key, _ in POINTS} for who in servers}
    with generator_cpus(pin["generator"]):
        for server in servers.values():
            with step(f"warm-up: {server.kind}, 8 connections for {args.warmup} s"):
                run_wrk(server, load["script"], 8, args.warmup)
        for n in range(args.rounds):
            # Each round the other server goes first, so neither always runs on a CPU the other just heated.
            order = ("service", "baseline") if n % 2 == 0 else ("baseline", "service")
            for key, connections in POINTS:
                for who in order:
                    what = f"{args.rate}/s open loop" if key == "open1" else f"wrk, {connections} connection(s)"
                    with step(f"round {n + 1}/{args.rounds}: {who}, {what}, {args.seconds} s"):
                        rounds[who][key].append(measure_point(servers[who], key, connections, args, load))
    pauses = {who: server.pauses() for who, server in servers.items()}
    containers.remove(baseline)
    medians = {
        who: {key: median_of_rounds(results) for key, results in points.items()} for who, points in rounds.items()
    }
    return service, {**medians, "rounds": rounds, "rate": args.rate, "seconds": args.seconds}, pauses


def resident_bytes(server: Server) -> int:
    """Resident memory (VmRSS) of every process in the server's container."""
    return int(_docker(server.docker, "exec", server.name, f"{VENV}/bin/python", "-c", RSS_PROBE).stdout.split()[-1])


def soak(server: Server, load: dict, seconds: int, pin: dict) -> dict:
    """Concurrency 8 for `seconds` against a warm service; errors and resident memory along the way."""
    start_rss = resident_bytes(server)
    samples = [(0.0, start_rss)]
    cmd = loadgen.wrk_command(f"{server.url}/predict", str(load["script"]), SOAK_CONNECTIONS, seconds)
    began = time.monotonic()
    with generator_cpus(pin["generator"]):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=RSS_SAMPLE_EVERY_S)
            if proc.poll() is None:
                samples.append((round(time.monotonic() - began, 1), resident_bytes(server)))
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0:
        raise UserError(f"wrk failed in the soak: {(err or out).strip()[-800:]}")
    result = loadgen.parse_wrk_report(out)
    end_rss = resident_bytes(server)
    samples.append((round(time.monotonic() - began, 1), end_rss))
    return {
        **result,
        "connections": SOAK_CONNECTIONS,
        "rss_start": start_rss,
        "rss_end": end_rss,
        "rss_growth": growth(start_rss, end_rss),
        "rss_samples": samples,
    }


def sigterm_under_load(server: Server, load: dict, pin: dict) -> dict:
    """SIGTERM while 8 connections keep requests in flight: what became of them, and how the container ended."""
    with generator_cpus(pin["generator"]):
        loop = loadgen.ClosedLoop(
            "127.0.0.1", server.port, "/predict", load["body"].encode(), connections=SIGTERM_CONNECTIONS
        )
        loop.start()
    time.sleep(2)
    signalled = time.monotonic()
    _docker(server.docker, "kill", "--signal", "TERM", server.name)
    try:
        code = int(_docker(server.docker, "wait", server.name, timeout=SIGTERM_EXIT_MAX_S * 3).stdout.strip())
        exit_s: float | None = time.monotonic() - signalled
    except UserError:
        code, exit_s = None, None
    records = loop.stop()
    return {
        **loadgen.in_flight_verdict(records, signalled),
        "exit_code": code,
        "exit_s": exit_s,
        "log_tail": server.logs(1500),
    }


def read_only_check(containers: Containers, record: dict, golden: dict, version: str) -> dict:
    """The image under --read-only, with a tmpfs only where the service writes, answers the golden cases."""
    env = json.loads(_docker(containers.docker, "image", "inspect", record["ref"]).stdout)[0]["Config"]["Env"]
    home = next((e.split("=", 1)[1] for e in env if e.startswith("BENTOML_HOME=")), "/home/bentoml")
    mounts = read_only_mounts(home)
    extra = ["--read-only", *(arg for m in mounts for arg in ("--tmpfs", m))]
    try:
        server = containers.start("service", extra=extra)
    except UserError as exc:
        return {"ok": False, "problems": [f"did not start: {str(exc)[-600:]}"], "tmpfs": mounts}
    problems = []
    try:
        response = httpx.post(
            f"{server.url}/predict", json={"rows": [case["features"] for case in golden["cases"]]}, timeout=30
        )
        if response.status_code != 200:
            problems.append(f"/predict answered {response.status_code}: {response.text[:300]}")
        else:
            problems += golden_problems(response.json(), golden, version)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10)
        if metrics.status_code != 200:
            problems.append(f"/metrics answered {metrics.status_code}")
    except httpx.HTTPError as exc:
        problems.append(f"request failed: {exc}")
    finally:
        containers.remove(server)
    return {"ok": not problems, "problems": problems, "tmpfs": mounts}


def timed_build(variant: str) -> tuple[float, dict]:
    """Wall time of `python -m ci.image.build` as a user runs it, and the record it wrote."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ci.image.build", "--variant", variant], cwd=ROOT, capture_output=True, text=True
    )
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise UserError(f"build failed during the benchmark:\n{proc.stderr[-2000:]}")
    return took, load_image(variant)


def layer_ids(docker: str, ref: str) -> list[str]:
    """The image's layer digests, base first."""
    return json.loads(_docker(docker, "image", "inspect", ref).stdout)[0]["RootFS"]["Layers"]


def model_only_rebuild(docker: str, before: dict) -> dict:
    """Swap in a slightly different model.onnx (same graph), rebuild, count reused layers, restore."""
    backup = Path(tempfile.mkdtemp())
    shutil.copy2(SERVED_MODEL, backup / "model.onnx")
    shutil.copy2(MANIFEST, backup / "manifest.json")
    try:
        SERVED_MODEL.write_bytes(perturbed_onnx(SERVED_MODEL.read_bytes()))
        manifest = json.loads(MANIFEST.read_text())
        manifest["version"], manifest["sha256"] = model_version(SERVED_MODEL.read_bytes())
        MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        took, after = timed_build(before["variant"])
        old, new = layer_ids(docker, before["ref"]), layer_ids(docker, after["ref"])
        reused = sum(1 for a, b in zip(old, new, strict=False) if a == b)
        rows = filesystem_layers(after["layers"])
        changed = (
            sum(row["size"] for row, digest in zip(rows, new, strict=True) if digest not in old)
            if len(rows) == len(new)
            else -1
        )
        subprocess.run([docker, "rmi", after["ref"]], capture_output=True)
        return {"seconds": took, "layers": len(new), "reused": reused, "changed_bytes": changed}
    finally:
        shutil.copy2(backup / "model.onnx", SERVED_MODEL)
        shutil.copy2(backup / "manifest.json", MANIFEST)
        shutil.rmtree(backup)
        timed_build(before["variant"])  # put build/ and the latest tag back to the real model (all cached)


def image_sizes() -> dict[str, int | None]:
    """The size of every variant's last build (None: not built here)."""
    return {v: load_image(v)["size"] if image_path(v).is_file() else None for v in VARIANTS}


# --- Report ---

LATENCY_NOTE = (
    "wire: request written -> response read, as the client saw it (a closed loop understates the tail).\n"
    "corrected: coordinated omission corrected; wrk rows: wrk's own histogram (stats_correct, interval =\n"
    "run time / requests per connection); open-loop row: time since the request was due at the fixed rate."
)


def _point_label(key: str, rate: int) -> str:
    return f"c=1 open loop {rate}/s" if key == "open1" else f"c={key[1:]} wrk"


def load_rows(load: dict) -> list[tuple]:
    """The load table: one row per point and server."""
    rows = []
    for key, _ in POINTS:
        for who in ("service", "baseline"):
            r = load[who][key]
            wire, corrected = r.get("wire") or {}, r.get("corrected") or {}
            gc = r.get("gc_longest_s")
            rows.append(
                (
                    _point_label(key, load["rate"]),
                    who,
                    f"{r['rps']:.0f}",
                    _ms(wire.get("p50_ms")),
                    _ms(wire.get("p99_ms")),
                    _ms(corrected.get("p50_ms")),
                    _ms(corrected.get("p99_ms")),
                    _ms(corrected.get("max_ms")),
                    r["errors"],
                    r["shed"],
                    "n/a" if gc is None else _ms(gc * 1000),
                )
            )
    return rows


def ratio_rows(load: dict) -> list[tuple]:
    """Service / baseline at each point: throughput and p99 of both kinds."""

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}x"

    rows = []
    for key, _ in POINTS:
        s, b = load["service"][key], load["baseline"][key]
        rows.append(
            (
                _point_label(key, load["rate"]),
                fmt(_ratio(s["rps"], b["rps"])),
                fmt(_ratio(_get(s, "corrected", "p99_ms"), _get(b, "corrected", "p99_ms"))),
                fmt(_ratio(_get(s, "wire", "p99_ms"), _get(b, "wire", "p99_ms"))),
            )
        )
    return rows


def goals_table(verdicts: Sequence[Verdict], section: str) -> str:
    return table(
        [(v.goal, v.target, v.measured, v.status) for v in verdicts if v.section == section],
        ("goal", "target", "measured", "verdict"),
    )


def markdown(figures: dict, verdicts: Sequence[Verdict]) -> str:
    """docs/figures.md's tables: every goal with its verdict, then the load table."""
    lines = [
        f"Image `{figures['image']}`; {figures['pinning']}.",
        "",
        "| section | goal | target | measured | verdict |",
        "|---|---|---|---|---|",
        *(f"| {v.section} | {v.goal} | {v.target} | {v.measured} | {v.status} |" for v in verdicts),
    ]
    if figures.get("load"):
        head = ("point", "server", "req/s", "wire p50", "wire p99", "corrected p50", "corrected p99", "max", "errors")
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(map(str, row[:9])) + " |" for row in load_rows(figures["load"])]
        lines += ["", *(f"{line}  " for line in LATENCY_NOTE.splitlines())]
    return "\n".join(lines) + "\n"


def print_report(figures: dict, verdicts: Sequence[Verdict]) -> None:
    record, floor = figures["record"], figures.get("floor")
    print(f"\nimage {record['ref']}: {human_bytes(record['size'])} ({record['size'] / 1e6:.0f} MB)")
    print(
        table(
            [
                (i, human_bytes(layer["size"]), layer["created_by"][:70].replace("\n", " "))
                for i, layer in enumerate(record["layers"])
                if layer["size"]
            ],
            ("layer", "size", "instruction"),
        )
    )
    if floor:
        top = sorted(floor["loaded_by_package"].items(), key=lambda kv: -kv[1])[:10]
        print(
            f"\nfloor: the service loads {human_bytes(floor['loaded_bytes'])} in {floor['files']} files "
            f"(+ {human_bytes(floor['sources_bytes'])} of their Python sources; {VENV} holds "
            f"{human_bytes(floor['venv_bytes'])})"
        )
        print(table([(name, human_bytes(size)) for name, size in top], ("loaded from", "bytes")))
    print("\n" + goals_table(verdicts, "size"))
    print("\n" + goals_table(verdicts, "start"))
    if load := figures.get("load"):
        print(f"\nload: {figures['pinning']}; median of {figures['rounds']} round(s) of {load['seconds']} s per point")
        print(LATENCY_NOTE)
        head = ("point", "server", "req/s", "wire p50", "wire p99", "corr. p50", "corr. p99", "corr. max")
        print(table(load_rows(load), (*head, "errors", "shed", "GC max")))
        print()
        print(table(ratio_rows(load), ("service / baseline", "req/s", "p99 corrected", "p99 wire")))
        print("\n" + goals_table(verdicts, "load"))
    if soak_ := figures.get("soak"):
        print(
            f"\nsoak: {soak_['connections']} connections for {soak_['seconds']:.0f} s, {soak_['rps']:.0f} req/s, "
            f"p99 wire {_ms(_get(soak_, 'wire', 'p99_ms'))}, corrected {_ms(_get(soak_, 'corrected', 'p99_ms'))}; "
            "RSS " + " -> ".join(human_bytes(b) for _, b in soak_["rss_samples"])
        )
    print("\n" + goals_table(verdicts, "soak"))
    if term := figures.get("sigterm"):
        print(
            f"\nSIGTERM under load: {term['sent_before']} requests sent before it, {term['in_flight']} in flight, "
            f"{term['in_flight_ok']} of those answered 2xx; after it {term['answered_after']} of "
            f"{term['sent_after']} answered; exit code {term['exit_code']}"
        )
    print("\n" + goals_table(verdicts, "shutdown"))
    if ro := figures.get("read_only"):
        print(f"\nread-only: tmpfs at {', '.join(ro['tmpfs'])}")
        if ro.get("uncovered_writes"):
            print(f"  the service also wrote outside them: {', '.join(ro['uncovered_writes'][:10])}")
    print("\n" + goals_table(verdicts, "read-only"))
    if rebuilds := figures.get("rebuilds"):
        model_only = rebuilds["model_only"]
        print(
            "\n"
            + table(
                [
                    ("no-op rebuild", f"{rebuilds['noop_s']:.1f} s", "every layer cached"),
                    (
                        "model-only rebuild",
                        f"{model_only['seconds']:.1f} s",
                        f"{model_only['reused']}/{model_only['layers']} layers reused, "
                        f"{human_bytes(model_only['changed_bytes'])} in new layers",
                    ),
                ],
                ("rebuild", "time", "detail"),
            )
        )
    for v in failed(verdicts):
        print(f"FAIL: {v.section}: {v.goal}: {v.measured}", file=sys.stderr)


# --- Main ---


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="cpu", choices=VARIANTS, help="the image to benchmark (default: cpu)")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load point (default: 10)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of service/baseline turns (default: 2)")
    parser.add_argument("--rate", type=int, default=200, help="open-loop requests/s at concurrency 1 (default: 200)")
    parser.add_argument("--soak-seconds", type=int, default=600, help="soak at concurrency 8; 0 skips (default: 600)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up load per server (default: 3)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and load generators to CPUs")
    parser.add_argument("--skip-rebuilds", action="store_true", help="skip the no-op and model-only rebuilds")
    parser.add_argument(
        "--quick", action="store_true", help="for iterating: 3 s points, one round, no soak, no rebuilds"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.soak_seconds, args.warmup, args.skip_rebuilds = 3, 1, 0, 1, True
    if args.seconds < 1 or args.rounds < 1 or args.rate < 1:
        parser.error("--seconds, --rounds and --rate must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m ci.bench.run [--variant cpu] [--quick] ...`: run every measurement, print the figures and goals."""
    args = parse_args(argv)
    docker = ensure_engine()
    record = load_image(args.variant)
    if not GOLDEN.is_file():
        raise UserError(f"{GOLDEN.relative_to(ROOT)} is missing: run `dvc repro` (or `nox -s repro`) first.")
    golden = json.loads(GOLDEN.read_text())
    version = record["model_tag"].rsplit(":", 1)[-1]  # the model baked into the image under test
    if not shutil.which("wrk"):
        apt_install("wrk")
    BUILD_DIR.mkdir(exist_ok=True)
    body = json.dumps({"rows": [golden["cases"][0]["features"]]})  # one row per request
    script = BUILD_DIR / "bench-post.lua"
    script.write_text(loadgen.wrk_script(body))
    load_inputs = {"body": body, "script": script}
    pin = pin_plan(sorted(os.sched_getaffinity(0)), enabled=not args.no_pin)
    say(f"pinning: {pin['text']}")

    figures: dict = {
        "variant": args.variant,
        "image": record["ref"],
        "record": {k: record[k] for k in ("ref", "id", "size", "layers", "variant")},
        "sizes": image_sizes(),
        "pinning": pin["text"],
        "rounds": args.rounds,
        "args": vars(args),
    }
    with step("floor: files the running service loads"):
        figures["floor"] = measure_floor(docker, record, golden["cases"][0]["features"])
    with step("cold start to ready (3 runs)"):
        figures["cold_start_s"] = cold_start(docker, record)
    with Containers(docker, record["ref"], pin["servers"]) as containers:
        service, figures["load"], figures["pauses"] = load_test(containers, args, load_inputs, pin)
        figures["soak"] = None
        if args.soak_seconds:
            with step(f"soak: {SOAK_CONNECTIONS} connections for {args.soak_seconds} s"):
                figures["soak"] = soak(service, load_inputs, args.soak_seconds, pin)
        with step("SIGTERM under load"):
            figures["sigterm"] = sigterm_under_load(service, load_inputs, pin)
        # What the service wrote over its whole life (load, soak, shutdown): all of it must be on a tmpfs.
        diff = subprocess.run([docker, "diff", service.name], capture_output=True, text=True).stdout
        containers.remove(service)
        with step("read-only root filesystem"):
            figures["read_only"] = read_only_check(containers, record, golden, version)
        figures["read_only"]["uncovered_writes"] = uncovered_writes(diff, figures["read_only"]["tmpfs"])
    figures["rebuilds"] = None
    if not args.skip_rebuilds:
        with step("no-op rebuild"):
            noop_s, record = timed_build(args.variant)
        with step("model-only rebuild"):
            figures["rebuilds"] = {"noop_s": noop_s, "model_only": model_only_rebuild(docker, record)}

    verdicts = evaluate(figures)
    figures["verdicts"] = [asdict(v) for v in verdicts]
    (BUILD_DIR / "bench.json").write_text(json.dumps(figures, indent=2) + "\n")
    (BUILD_DIR / "bench.md").write_text(markdown(figures, verdicts))
    print_report(figures, verdicts)
    print(f"\nwrote {BUILD_DIR / 'bench.json'} and {BUILD_DIR / 'bench.md'}")
    if bad := failed(verdicts):
        raise UserError(f"{len(bad)} functional check(s) failed: {', '.join(v.goal for v in bad)} (see above).")


if __name__ == "__main__":
    main_guard(main)
