"""Throwaway Docker Distribution registries (ci/publish/registry.py), and `python -m ci.publish.push` run against them.

Every registry lives in a temporary directory on a free loopback port; the push runs as the user
runs it, a subprocess with REGISTRY, REGISTRY_USER and REGISTRY_PASSWORD, and an empty
DOCKER_CONFIG so no login of the user's is ever used or touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ci.project import ROOT, section
from ci.publish.registry import LocalRegistry, start_registry, stop_registry

PUSH_TIMEOUT_S = 600  # generous: a first push compresses ~390 MB of layers, well under a minute on 2 cores
UPLOAD_METHODS = ("POST", "PATCH", "PUT")  # the requests that send blob bytes; HEAD only asks


@dataclass
class Registry:
    """A registry under test that a test may kill and start again on the same port and storage."""

    directory: Path
    current: LocalRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.current = start_registry(self.directory)

    @property
    def host(self) -> str:
        """host:port of the registry."""
        return self.current.host

    def kill(self) -> None:
        """SIGKILL the registry: no chance to finish a request, as when a machine or network dies."""
        assert self.current.process is not None
        self.current.process.kill()
        self.current.process.wait()

    def restart(self) -> None:
        """Start the registry again from its directory: same port, same storage, same password."""
        self.current = start_registry(self.directory)

    def stop(self) -> None:
        """Stop the registry for good."""
        stop_registry(self.current)

    def api(self, path: str, *, method: str = "GET", auth: bool = True, **kwargs) -> httpx.Response:
        """One request to the registry's HTTP API, with the registry's credentials unless auth=False."""
        credentials = (self.current.user, self.current.password) if auth else None
        return httpx.request(method, f"{self.current.url}{path}", auth=credentials, timeout=30, **kwargs)

    def stream(self, path: str):
        """A streamed GET with the registry's credentials (a context manager), for blobs of hundreds of MB."""
        credentials = (self.current.user, self.current.password)
        return httpx.stream("GET", f"{self.current.url}{path}", auth=credentials, timeout=60)

    def log_lines(self) -> list[str]:
        """Every line the registry logged so far (across restarts: the log is appended to)."""
        return self.current.log.read_text(errors="replace").splitlines()

    def upload_requests(self, since: int = 0) -> list[str]:
        """Access-log lines of requests that upload blob bytes, from log line `since` on."""
        return [
            line
            for line in self.log_lines()[since:]
            if any(f'"{method} /v2/' in line and "/blobs/uploads/" in line for method in UPLOAD_METHODS)
        ]

    def blob_bytes(self) -> int:
        """Bytes of all complete blobs in the registry's storage."""
        blobs = self.current.storage / "docker/registry/v2/blobs"
        return sum(path.stat().st_size for path in blobs.rglob("data")) if blobs.exists() else 0

    def partial_upload_bytes(self) -> int:
        """Bytes of the largest upload in progress (a blob being received)."""
        uploads = self.current.storage.rglob("_uploads/*/data")
        return max((path.stat().st_size for path in uploads), default=0)


def push_command(out: Path) -> list[str]:
    """`python -m ci.publish.push` for the CPU image, writing its record to `out`."""
    # These tests are about pushing, not about the scan gate or the refusal of a dirty image
    # (tests/ci/publish/test_push.py covers both): the image they push is never published, so they skip the
    # gate instead of scanning first, and a checkout with changes pushes it under its dirty- tag.
    return [
        sys.executable,
        "-m",
        "ci.publish.push",
        "--variant",
        "cpu",
        "--out",
        str(out),
        "--skip-scan-gate",
        "--allow-dirty",
    ]


def push_env(registry: Registry, docker_config: Path, *, user: str | None = None, password: str | None = None) -> dict:
    """Environment of a push to `registry`: REGISTRY, the account given (none: anonymous), an empty DOCKER_CONFIG."""
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_USER", "REGISTRY_PASSWORD", "IMAGE_VERSION")}
    env |= {"REGISTRY": registry.host, "DOCKER_CONFIG": str(docker_config)}
    if user is not None:
        env |= {"REGISTRY_USER": user, "REGISTRY_PASSWORD": password or ""}
    return env


def run_push(registry: Registry, tmp_path: Path, **account) -> subprocess.CompletedProcess:
    """Run a push to `registry` to its end (bounded in time) and return its exit code and output."""
    (tmp_path / "docker-config").mkdir(exist_ok=True)
    return subprocess.run(
        push_command(tmp_path),
        cwd=ROOT,
        env=push_env(registry, tmp_path / "docker-config", **account),
        capture_output=True,
        text=True,
        timeout=PUSH_TIMEOUT_S,
    )


def repository() -> str:
    """The image's repository name inside the registry (params.yaml → image.repository)."""
    return section("image")["repository"]
