"""Find a Docker engine (and a CLI that builds with BuildKit), starting one when we may.

On the project's machines (Debian 12, root) no engine runs on a new machine; Debian's docker.io
installs and runs. Elsewhere we do not install system packages: we say what to run instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from functools import lru_cache
from pathlib import Path

from ci.project import UserError, run, say

DEBIAN_CLI = "/usr/bin/docker"  # Debian's 20.10 CLI builds with BuildKit without the buildx plugin
DOCKERD_LOG = Path("/var/log/dockerd.log")
START_TIMEOUT_S = 60


def engine_answers(cli: str = "docker") -> bool:
    """True when `docker info` reaches a running engine."""
    try:
        proc = subprocess.run([cli, "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@lru_cache(maxsize=1)
def docker_cli() -> str:
    """The docker CLI to use: one that can run `DOCKER_BUILDKIT=1 docker build`."""
    if override := os.environ.get("DOCKER_CLI"):
        return override
    # A CLI with the buildx plugin (GitHub runners, Docker Desktop) builds with BuildKit itself.
    plain = shutil.which("docker")
    if plain and subprocess.run([plain, "buildx", "version"], capture_output=True).returncode == 0:
        return plain
    if Path(DEBIAN_CLI).exists():
        return DEBIAN_CLI
    if plain:
        raise UserError(
            f"{plain} cannot build with BuildKit (no buildx plugin): install the buildx plugin, "
            "or Debian's docker.io (`apt-get install docker.io`), or set DOCKER_CLI to a CLI that can."
        )
    raise UserError("No docker CLI found: install Docker (on Debian: `apt-get install docker.io`).")


def _can_install() -> bool:
    return os.geteuid() == 0 and Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def apt_install(*packages: str) -> None:
    """Install Debian packages (root on Debian only), refreshing the package lists first."""
    if not _can_install():
        raise UserError(
            f"{', '.join(packages)} missing: install them (Debian: `apt-get install {' '.join(packages)}`)."
        )
    say(f"installing {' '.join(packages)} from Debian's archive")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env)


def ensure_engine() -> str:
    """Return the docker CLI to use, after making sure an engine answers (starting one if allowed)."""
    if engine_answers():
        return docker_cli()
    if os.environ.get("NO_START_ENGINE") or not _can_install():
        raise UserError(
            "No Docker engine answers: start one (`sudo systemctl start docker`, or as root "
            "`setsid dockerd >/var/log/dockerd.log 2>&1 &`) and run this again."
        )
    if not shutil.which("dockerd"):
        apt_install("docker.io")
    say(f"starting dockerd (log: {DOCKERD_LOG})")
    with DOCKERD_LOG.open("ab") as log:
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if engine_answers():
            say("Docker engine is up")
            return docker_cli()
        time.sleep(1)
    raise UserError(f"dockerd did not answer within {START_TIMEOUT_S} s: read {DOCKERD_LOG} for the reason.")


def main() -> None:
    """`python -m ci.engine`: make sure an engine runs and print the CLI to use."""
    print(ensure_engine())


if __name__ == "__main__":
    from ci.project import main_guard

    main_guard(main)
