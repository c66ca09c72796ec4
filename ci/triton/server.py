"""Start and stop a real Triton Inference Server on 127.0.0.1, on free ports, for the tests and the bench.

Two servers, one interface (`serve(kind)`):

- `wheel` (here, and the `triton` job): the `tritonserver` binary the nvidia-pytriton wheel ships,
  with its Python backend, serving the Python-backend twin of the stage's repository
  (ci/triton/repository.py). It runs on the CPU; its CUDA warnings are harmless. The backend's stub
  links libpython, so the interpreter's own library directory goes on LD_LIBRARY_PATH: the stub
  then runs the very Python of this environment.
- `image` (the `triton_image` job in GitHub Actions; no container registry is reachable on this
  project's machines): the official Triton image, pinned by digest, serving models/triton/ itself
  with its ONNX Runtime backend (`platform: "onnxruntime_onnx"`), with `--network host`.

Both listen on 127.0.0.1 only, with metrics off, the config taken as written
(`--disable-auto-complete-config`), and a short exit timeout. Start-up that fails ends in one
sentence with the tail of the server's log (build/triton/server.log); stopping ends the whole
process group (the Python backend's stubs included) and checks that nothing of it is left.

`python -m ci.triton.server [--image]` serves in the foreground until Ctrl-C (the curl in docs/triton.md).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ci.processes import free_ports, stop_group
from ci.project import BUILD_DIR, ROOT, UserError, main_guard, say, step
from ci.triton import repository
from pipeline import triton

# Triton 25.06 (server 2.59). No registry is reachable from this project's machines, so the digest
# is the one public projects pin this tag to (docs/triton.md#the-official-image); docker pulls by the
# digest and refuses content that does not hash to it.
IMAGE = "nvcr.io/nvidia/tritonserver:25.06-py3@sha256:75bcfa5b0043898ece3e603c17a5bbbb1c9bddc390563db24312ef59d83735e5"
KINDS = ("wheel", "image")
ENV_VAR = "TRITON_SERVER"  # which server the tests start: wheel (default) or image
HOST = "127.0.0.1"
RUNS = BUILD_DIR / "triton"  # each server's files: <RUNS>/server-<http port>/ (log, backends, repository)
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_LINES = 3
ERROR_LINE = re.compile(r"^E\d{4} ")  # Triton's log: E<month><day> for an error
# What the model metadata reports as its platform on each server.
PLATFORMS = {"wheel": "python", "image": triton.PLATFORM}


@dataclass(frozen=True)
class Server:
    """A started server: where it answers and what it serves."""

    kind: str
    http_port: int
    grpc_port: int
    model_name: str
    repository: Path  # the repository it was given (on this machine)
    process: subprocess.Popen
    log: Path
    container: str = ""  # the image's container name

    @property
    def http_url(self) -> str:
        """host:port, as tritonclient.http takes it."""
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """host:port, as tritonclient.grpc takes it."""
        return f"{HOST}:{self.grpc_port}"

    @property
    def platform(self) -> str:
        """The platform the model metadata reports."""
        return PLATFORMS[self.kind]


def server_flags(repository_path: str, http_port: int, grpc_port: int) -> list[str]:
    """The flags both servers get: loopback only, no metrics, the config as written, a short exit."""
    return [
        f"--model-repository={repository_path}",
        f"--http-address={HOST}",
        f"--http-port={http_port}",
        f"--grpc-address={HOST}",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=false",
        "--disable-auto-complete-config",
        "--model-control-mode=none",
        "--exit-timeout-secs=5",
    ]


@dataclass(frozen=True)
class Wheel:
    """The Triton files inside the installed nvidia-pytriton wheel."""

    binary: Path
    python_backend: Path
    stub: Path  # the Python backend stub built for this interpreter's version
    libraries: Path

    @classmethod
    def find(cls) -> Wheel:
        """Locate them, or say how to install them."""
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise UserError("nvidia-pytriton is not installed here: run `nox -s triton` (requirements-triton.lock).")
        package = Path(next(iter(spec.submodule_search_locations)))
        server = package / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        wheel = cls(
            binary=server / "bin" / "tritonserver",
            python_backend=server / "backends" / "python",
            stub=server / "python_backend_stubs" / version / "triton_python_backend_stub",
            libraries=package.parent / "nvidia_pytriton.libs",
        )
        if missing := [
            str(p) for p in (wheel.binary, wheel.python_backend, wheel.stub, wheel.libraries) if not p.exists()
        ]:
            raise UserError(f"the nvidia-pytriton wheel lacks {', '.join(missing)}: reinstall it with `nox -s triton`.")
        return wheel

    def backends(self, target: Path) -> Path:
        """A backend directory with the Python backend and this Python's stub (the wheel keeps one per version)."""
        shutil.copytree(self.python_backend, target / "python")
        shutil.copy2(self.stub, target / "python" / self.stub.name)
        return target

    def environment(self) -> dict[str, str]:
        """The server's environment: the wheel's libraries and this interpreter's libpython for the stub."""
        paths = [str(self.libraries), sysconfig.get_config_var("LIBDIR") or "", os.environ.get("LD_LIBRARY_PATH", "")]
        return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(p for p in paths if p)}


def wheel_command(wheel: Wheel, repository_path: Path, backends: Path, http_port: int, grpc_port: int) -> list[str]:
    """The wheel's tritonserver on the Python-backend repository."""
    flags = server_flags(str(repository_path), http_port, grpc_port)
    return [str(wheel.binary), *flags, f"--backend-directory={backends}"]


def image_command(docker: str, name: str, repository_path: Path, http_port: int, grpc_port: int) -> list[str]:
    """The official image on the stage's repository, mounted read-only, on the host's loopback."""
    return [
        docker,
        "run",
        "--rm",
        f"--name={name}",
        "--network=host",
        f"--volume={repository_path}:/models:ro",
        IMAGE,
        "tritonserver",
        *server_flags("/models", http_port, grpc_port),
    ]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """What the server's log says last, on one line: its last error lines and its last line, tables left out."""
    text = path.read_text(errors="replace") if path.is_file() else ""
    kept = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("+", "|"))]
    errors = [line for line in kept if ERROR_LINE.match(line)]
    picked = dict.fromkeys([*errors[-(lines - 1) :], *kept[-1:]])  # in order, without repeats
    return " | ".join(picked) or "(empty)"


def is_ready(http_port: int) -> bool:
    """True when the server answers 200 to the protocol's readiness endpoint."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{http_port}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(server: Server, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until the server and its model are ready; a server that exits or stays unready is a UserError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_ready(server.http_port):
            return
        if server.process.poll() is not None:
            raise UserError(
                f"Triton ({server.kind}) exited with code {server.process.returncode} before it was ready; "
                f"its log ({shown(server.log)}) ends: {log_tail(server.log)}"
            )
        time.sleep(0.2)
    raise UserError(
        f"Triton ({server.kind}) was not ready within {timeout:.0f} s; its log ({shown(server.log)}) ends: "
        f"{log_tail(server.log)}"
    )


def stop(server: Server) -> None:
    """Stop the server and everything it started; UserError if a process of it survives."""
    if server.container:
        subprocess.run(["docker", "stop", "--time=10", server.container], capture_output=True, check=False)
    # start_new_session: the server leads its own group; a stub whose parent died is ended too.
    if left := stop_group(server.process, STOP_TIMEOUT_S):
        raise UserError(f"Triton left processes {left} running after it stopped: end them with `kill -9 {left[0]}`.")


@contextmanager
def serve(kind: str = "wheel") -> Iterator[Server]:
    """A ready server of `kind` for the duration of the block, stopped afterwards whatever happens.

    Its files live in build/triton/server-<http port>/ (so two servers never share one), removed
    after a clean stop and kept when start-up failed: the error names the log.
    """
    if kind not in KINDS:
        raise UserError(f"{ENV_VAR}={kind!r} names no Triton server: use one of {', '.join(KINDS)}.")
    http_port, grpc_port = free_ports(2)
    name = repository.model_dir().name
    run_dir = RUNS / f"server-{http_port}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    container = ""
    if kind == "wheel":
        wheel = Wheel.find()
        # The stub runs in this very environment (sys.prefix): it has numpy and onnxruntime.
        model_repository = repository.derive(Path(sys.prefix), target=run_dir / "repository").parent
        command = wheel_command(wheel, model_repository, wheel.backends(run_dir / "backends"), http_port, grpc_port)
        env = wheel.environment()
    else:
        model_repository = repository.SOURCE
        container = f"ml-model-image-triton-{http_port}"
        with step(f"Pulling {IMAGE}"):
            subprocess.run(["docker", "pull", IMAGE], check=True)
        command = image_command("docker", container, model_repository, http_port, grpc_port)
        env = dict(os.environ)
    say(f"Starting Triton ({kind}) on http {HOST}:{http_port}, grpc {HOST}:{grpc_port}: {shown(model_repository)}")
    log = run_dir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = Server(kind, http_port, grpc_port, name, model_repository, process, log, container)
    try:
        wait_ready(server)
    except BaseException:
        stop(server)
        raise
    try:
        yield server
    finally:
        stop(server)
    shutil.rmtree(run_dir, ignore_errors=True)


def shown(path: Path) -> str:
    """A path relative to the checkout when it is inside it."""
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def main() -> None:
    """Serve in the foreground until Ctrl-C, printing the endpoints and a curl to try."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--image", action="store_true", help=f"serve with the official image ({IMAGE})")
    args = parser.parse_args()
    # Ctrl-C, and `kill` too, stop the server cleanly (a shell's background job starts with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with serve("image" if args.image else "wheel") as server:
        print(f"Triton ({server.kind}) serving {server.model_name}: HTTP {server.http_url}, gRPC {server.grpc_url}")
        print(f"  curl -s http://{server.http_url}/v2/models/{server.model_name}")
        print("Ctrl-C (or kill) stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()


if __name__ == "__main__":
    main_guard(main)
