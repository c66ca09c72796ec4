"""Benchmark the built CPU image; every figure comes from this one run, printed side by side.

Measures: image size with a per-layer breakdown and the floor (the files the running service
really loads); cold start to ready; no-op rebuild; model-only rebuild (and how many layers it
reused); requests/s and p50/p99 latency at concurrency 1, 8 and 32 (wrk, one row per request,
so adaptive batching has work to do; the container on the host network, so docker-proxy is not
what is measured). Writes build/bench.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from ci.build_image import load_image_record
from ci.engine import apt_install, ensure_engine
from ci.project import (
    BUILD_DIR,
    GOLDEN,
    MANIFEST,
    ROOT,
    UserError,
    human_bytes,
    main_guard,
    sha256_file,
    step,
    table,
)
from pipeline import artifacts

MODEL_FILE = ROOT / artifacts.MODEL_FILE  # interim: the next commit moves the bench to the ONNX model
CONCURRENCY = (1, 8, 32)
# Run inside the image: load the service the way the server does, serve one prediction, then list
# every file the process has loaded (Python modules and shared libraries) and sum them by package.
FLOOR_PROBE = r"""
import json, os, sys, importlib.metadata as md
sys.path.insert(0, "/home/bentoml/bento/src")
import bentoml, uvicorn, _bentoml_impl.server.app, bentoml_cli.serve
from bentos.classifier import service
svc = service.Classifier.inner()
svc.predict([[1.0] * service.MANIFEST["n_features"]])
files = {m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
for line in open("/proc/self/maps"):
    parts = line.split()
    if len(parts) >= 6 and parts[5].startswith("/"):
        files.add(parts[5])
files |= {str(p) for p in __import__("pathlib").Path(service.MODEL.stored.path).rglob("*") if p.is_file()}
site = [p for p in sys.path if p.endswith("site-packages")][0]
owner = {}
for dist in md.distributions():
    for f in dist.files or []:
        owner[os.path.normpath(os.path.join(site, str(f)))] = dist.metadata["Name"]
by = {}
for f in files:
    if os.path.isfile(f):
        key = owner.get(os.path.normpath(f), "system" if not f.startswith(site) else "other")
        by[key] = by.get(key, 0) + os.path.getsize(f)
venv = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk("/opt/venv") for f in fs
           if os.path.isfile(os.path.join(d, f)))
print(json.dumps({"loaded_by_package": by, "venv_bytes": venv}))
"""


def _docker(docker: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([docker, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"`docker {args[0]}` failed during the benchmark: {proc.stderr.strip()[-1500:]}")
    return proc


def measure_floor(docker: str, record: dict) -> dict:
    """Bytes of files the running service loads, by package, versus what the image ships."""
    # BENTOML_HOME=<bento dir> makes the Bento's models/ the model store, as `bentoml serve` does;
    # root only so BentoML may write its scratch files there.
    env = ["-e", "TF_CPP_MIN_LOG_LEVEL=3", "-e", "BENTOML_HOME=/home/bentoml/bento"]
    entry = ["--entrypoint", "/opt/venv/bin/python", "--user", "0"]
    proc = _docker(docker, "run", "--rm", "--network", "none", *entry, *env, record["ref"], "-c", FLOOR_PROBE)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["loaded_bytes"] = sum(result["loaded_by_package"].values())
    return result


def cold_start(docker: str, record: dict, runs: int = 3) -> list[float]:
    """Seconds from `docker run` to the first 200 from /readyz, `runs` times."""
    times = []
    for _ in range(runs):
        start = time.monotonic()
        name = f"bench-{int(start * 1000)}"
        _docker(docker, "run", "-d", "--name", name, "-p", f"127.0.0.1::{record['port']}", record["ref"])
        try:
            port = _docker(docker, "port", name, str(record["port"])).stdout.split(":")[-1].strip()
            while time.monotonic() - start < 120:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            else:
                raise UserError("the image did not become ready within 120 s: run `nox -s test` to see why.")
            times.append(time.monotonic() - start)
        finally:
            subprocess.run([docker, "rm", "-f", name], capture_output=True)
    return times


def timed_build() -> tuple[float, dict]:
    """Wall time of `python -m ci.build_image` as a user runs it, and the record it wrote."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ci.build_image"], cwd=ROOT, capture_output=True, text=True)
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise UserError(f"build failed during the benchmark:\n{proc.stderr[-2000:]}")
    return took, load_image_record()


def layer_ids(docker: str, ref: str) -> list[str]:
    """The image's layer digests, base first."""
    return json.loads(_docker(docker, "image", "inspect", ref).stdout)[0]["RootFS"]["Layers"]


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


def model_only_rebuild(docker: str, before: dict) -> dict:
    """Swap in a slightly different model (same architecture), rebuild, count reused layers, restore."""
    import keras  # only here: the rest of the benchmark does not need TensorFlow

    from pipeline.reproducible import keras_model_bytes

    backup = Path(tempfile.mkdtemp())
    shutil.copy2(MODEL_FILE, backup / "model.keras")
    shutil.copy2(MANIFEST, backup / "manifest.json")
    try:
        model = keras.saving.load_model(MODEL_FILE, compile=False)
        last = model.layers[-1]
        weights = last.get_weights()
        weights[-1] = weights[-1] + 1e-6  # a different artifact, predictions practically unchanged
        last.set_weights(weights)
        MODEL_FILE.write_bytes(keras_model_bytes(model))
        manifest = json.loads(MANIFEST.read_text())
        manifest["sha256"] = sha256_file(MODEL_FILE)
        manifest["version"] = manifest["sha256"][:16]
        MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        took, after = timed_build()
        old, new = layer_ids(docker, before["ref"]), layer_ids(docker, after["ref"])
        reused = sum(1 for a, b in zip(old, new, strict=False) if a == b)
        rows = filesystem_layers(after["layers"])
        changed = (
            sum(row["size"] for row, digest in zip(rows, new, strict=True) if digest not in old)
            if len(rows) == len(new)
            else -1
        )
        subprocess.run([docker, "rmi", after["ref"]], capture_output=True)
        return {
            "seconds": took,
            "layers": len(new),
            "reused": reused,
            "changed_bytes": changed,
        }
    finally:
        shutil.copy2(backup / "model.keras", MODEL_FILE)
        shutil.copy2(backup / "manifest.json", MANIFEST)
        shutil.rmtree(backup)
        timed_build()  # put build/ and the :latest tag back to the real model (all cached)


WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"rows": [%s]}'
"""


def parse_wrk(text: str) -> dict:
    """requests/s and p50/p99 latency (ms) from `wrk --latency` output."""

    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
        return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.MULTILINE).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.MULTILINE).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0}


def load_test(docker: str, record: dict, seconds: int, golden_row: list[float]) -> dict[int, dict]:
    """wrk against one container at each concurrency level, one row per request."""
    if not shutil.which("wrk"):
        apt_install("wrk")
    script = BUILD_DIR / "bench-post.lua"
    script.write_text(WRK_SCRIPT % json.dumps(golden_row))
    from tests.contract.containers import start_container, stop_container

    container = start_container(docker, record["ref"], record["port"], host_network=True)
    try:
        results = {}
        subprocess.run(
            ["wrk", "-t1", "-c1", "-d2s", "-s", str(script), f"{container.url}/predict"], capture_output=True
        )  # warm-up
        for conns in CONCURRENCY:
            with step(f"wrk: {conns} connection(s) for {seconds} s"):
                out = subprocess.run(
                    [
                        "wrk",
                        f"-t{min(conns, 2)}",
                        f"-c{conns}",
                        f"-d{seconds}s",
                        "--latency",
                        "-s",
                        str(script),
                        f"{container.url}/predict",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            results[conns] = parse_wrk(out)
        return results
    finally:
        stop_container(container)


def main() -> None:
    """`python -m ci.bench [--seconds N]`: run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    args = parser.parse_args()
    docker = ensure_engine()
    record = load_image_record()
    golden = json.loads(GOLDEN.read_text())["cases"][0]["features"]

    with step("floor: files the running service loads"):
        floor = measure_floor(docker, record)
    with step("cold start to ready (3 runs)"):
        starts = cold_start(docker, record)
    with step("no-op rebuild"):
        noop_s, record = timed_build()
    with step("model-only rebuild"):
        model_only = model_only_rebuild(docker, record)
    load = load_test(docker, record, args.seconds, golden)

    base_bytes = record["layers"][0]["size"]
    figures = {
        "image": record["ref"],
        "size": record["size"],
        "layers": record["layers"],
        "floor": floor,
        "cold_start_s": starts,
        "noop_rebuild_s": noop_s,
        "model_only_rebuild": model_only,
        "load": load,
    }
    (BUILD_DIR / "bench.json").write_text(json.dumps(figures, indent=2) + "\n")

    print(f"\nimage {record['ref']}: {human_bytes(record['size'])}")
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
    top = sorted(floor["loaded_by_package"].items(), key=lambda kv: -kv[1])[:8]
    print(
        f"\nfloor: the service loads {human_bytes(floor['loaded_bytes'])} of files "
        f"(base layer {human_bytes(base_bytes)}, /opt/venv {human_bytes(floor['venv_bytes'])})"
    )
    print(table([(name, human_bytes(size)) for name, size in top], ("package", "loaded")))
    print()
    print(
        table(
            [
                (
                    "cold start to ready (median of 3)",
                    f"{statistics.median(starts):.2f} s",
                    " / ".join(f"{s:.2f}" for s in starts),
                ),
                ("no-op rebuild", f"{noop_s:.1f} s", "every layer cached"),
                (
                    "model-only rebuild",
                    f"{model_only['seconds']:.1f} s",
                    f"{model_only['reused']}/{model_only['layers']} layers reused, "
                    f"{human_bytes(model_only['changed_bytes'])} in new layers",
                ),
            ],
            ("measure", "value", "detail"),
        )
    )
    print()
    print(
        table(
            [(c, f"{r['rps']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", r["non_2xx"]) for c, r in load.items()],
            ("concurrency", "req/s", "p50 ms", "p99 ms", "non-2xx"),
        )
    )


if __name__ == "__main__":
    main_guard(main)
