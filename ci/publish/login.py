"""A registry login that lasts one command: the credentials go to a temporary DOCKER_CONFIG, never ~/.docker.

Standard library only: `nox -s push` (ci/publish/push.py) logs docker in with it, and the push
job's signing (ci/runner/signing.py, on the runner's own Python) logs cosign in the same way.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LoginError(Exception):
    """`<cli> login` failed; `output` is what it printed (stdout and stderr)."""

    def __init__(self, cli: str, host: str, user: str, output: str):
        super().__init__(f"{Path(cli).name} could not log in to {host} as {user}: {output.strip()[-300:]}")
        self.output = output


@contextmanager
def temporary_login(cli: str, host: str, user: str, password: str) -> Iterator[dict[str, str]]:
    """`<cli> login host` (docker or cosign) with the password on stdin; yields {"DOCKER_CONFIG": dir}.

    The directory, and the credentials in it, are deleted when the block ends, whatever happens in it.
    """
    with tempfile.TemporaryDirectory(prefix=f"{Path(cli).name}-docker-config-") as config:
        env = {"DOCKER_CONFIG": config}
        proc = subprocess.run(
            [cli, "login", host, "--username", user, "--password-stdin"],
            input=password,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        if proc.returncode != 0:
            raise LoginError(cli, host, user, proc.stdout + proc.stderr)
        yield env
