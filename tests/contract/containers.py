"""Start and stop containers of the image under test (used by the contract fixtures and tests)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest

from ci.processes import free_port

READY_TIMEOUT_S = 120


@dataclass
class Container:
    """A running container of the image under test."""

    docker: str
    name: str
    url: str

    def logs(self) -> str:
        """Everything the container wrote to stdout and stderr so far."""
        proc = subprocess.run([self.docker, "logs", self.name], capture_output=True, text=True)
        return proc.stdout + proc.stderr

    def inspect(self) -> dict:
        """`docker inspect` of the container."""
        out = subprocess.run([self.docker, "inspect", self.name], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)[0]


def start_container(docker: str, ref: str, port: int, *, host_network: bool = False) -> Container:
    """Run the image detached on a free loopback port and wait until /readyz answers 200.

    By default the port is published through Docker (`-p 127.0.0.1::port`), as a user runs it.
    With `host_network` the server listens on the host's loopback directly, without docker-proxy
    in the path: the benchmark measures the service, not Docker's userland proxy.
    """
    name = f"contract-{uuid.uuid4().hex[:10]}"
    if host_network:
        host_port = str(free_port())
        args = ["--network", "host", "-e", f"BENTOML_PORT={host_port}", "-e", "BENTOML_HOST=127.0.0.1"]
        subprocess.run([docker, "run", "-d", "--name", name, *args, ref], check=True, capture_output=True)
    else:
        subprocess.run(
            [docker, "run", "-d", "--name", name, "-p", f"127.0.0.1::{port}", ref], check=True, capture_output=True
        )
        host_port = (
            subprocess.run([docker, "port", name, str(port)], capture_output=True, text=True, check=True)
            .stdout.split(":")[-1]
            .strip()
        )
    container = Container(docker, name, f"http://127.0.0.1:{host_port}")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        state = container.inspect()["State"]
        if not state["Running"]:
            stop_container(container)
            pytest.fail(f"container exited with {state['ExitCode']} before ready:\n{container.logs()[-3000:]}")
        try:
            if httpx.get(f"{container.url}/readyz", timeout=2).status_code == 200:
                return container
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    logs = container.logs()
    stop_container(container)
    pytest.fail(f"container not ready after {READY_TIMEOUT_S} s:\n{logs[-3000:]}")


def stop_container(container: Container) -> None:
    """Remove the container, whatever state it is in."""
    subprocess.run([container.docker, "rm", "-f", container.name], capture_output=True)
