"""A local Docker Distribution registry, with htpasswd auth, on 127.0.0.1: for `nox -s push` and its tests.

Debian's `docker-registry` package is Docker Distribution 2.8, the registry that Docker Hub, GitLab and
Harbor grew from, so what `nox -s push` proves against it (auth, layer reuse, a tag only after every
layer) holds for them too. Everything an instance needs lives in one directory:

    config.yml   the registry's configuration (0600: it holds the HTTP secret)
    htpasswd     the bcrypt entry of the one user (0600)
    password     that user's random password (0600), for `docker login --password-stdin`
    storage/     the blobs and manifests; kept, so a second push finds its layers already there
    registry.log what the registry printed, access log included (the tests count uploads in it)
    registry.pid the process, so `stop` ends the one this directory started and nothing else

`python -m ci.publish.registry start|stop` serves the default instance (.cache/registry) in the background,
e.g. to pull from it after `nox -s push`, which starts and stops it by itself.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from ci.engine import apt_install
from ci.processes import free_port
from ci.project import CACHE_DIR, UserError, main_guard, say

LOCAL_DIR = CACHE_DIR / "registry"
LOCAL_USER = "ci"
REALM = "ml-model-image"
READY_TIMEOUT_S = 20
STOP_TIMEOUT_S = 10
# The command each tool comes in, and its Debian package. htpasswd (apache2-utils) makes the bcrypt
# entry: the registry accepts only bcrypt, the lock has no bcrypt package, and Python's crypt module
# is deprecated (a warning, hence an error under pytest) and gone in 3.13.
TOOLS = {"docker-registry": "docker-registry", "htpasswd": "apache2-utils"}
# bcrypt cost: the registry checks the hash on every request of a push (hundreds), and the password is
# 32 random bytes, so a high cost would only slow pushes down, never an attacker.
BCRYPT_COST = "5"


@dataclass
class LocalRegistry:
    """A running registry: where it listens, its credentials, and its process when we started it."""

    directory: Path
    port: int
    user: str
    password: str
    process: subprocess.Popen | None = None  # None: found running (started by `start`), not ours to stop

    @property
    def host(self) -> str:
        """host:port, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL of the registry's HTTP API."""
        return f"http://{self.host}"

    @property
    def storage(self) -> Path:
        """The filesystem root of the registry's blobs and manifests."""
        return self.directory / "storage"

    @property
    def log(self) -> Path:
        """The registry's own log (application and access log)."""
        return self.directory / "registry.log"


def render_config(*, storage: Path, port: int, htpasswd: Path, secret: str) -> str:
    """The registry's config.yml: filesystem storage, loopback only, htpasswd auth on every request."""
    config = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}},
        # Loopback only: a registry on all interfaces would publish the images to the network.
        "http": {"addr": f"127.0.0.1:{port}", "secret": secret, "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "auth": {"htpasswd": {"realm": REALM, "path": str(htpasswd)}},
    }
    return yaml.safe_dump(config, sort_keys=False)


def configured_port(config: Path) -> int | None:
    """The port an existing config.yml listens on, or None when there is no usable config."""
    try:
        addr = yaml.safe_load(config.read_text())["http"]["addr"]
        return int(str(addr).rsplit(":", 1)[1])
    except (OSError, yaml.YAMLError, KeyError, TypeError, IndexError, ValueError):
        return None


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        # As Go's listeners do: connections closed a moment ago (TIME_WAIT) must not count as taken,
        # or a registry restarted right after it stopped would move to another port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600), whatever its mode was before."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def ensure_tools() -> None:
    """Install docker-registry and htpasswd from Debian's archive when they are missing."""
    missing = sorted({package for tool, package in TOOLS.items() if not shutil.which(tool)})
    if missing:
        apt_install(*missing)


def htpasswd_entry(user: str, password: str) -> str:
    """A bcrypt htpasswd line for user, the password passed on stdin (never on a command line)."""
    proc = subprocess.run(
        ["htpasswd", "-n", "-i", "-B", "-C", BCRYPT_COST, user], input=password, capture_output=True, text=True
    )
    if proc.returncode != 0 or not proc.stdout.startswith(f"{user}:$2"):
        raise UserError(f"htpasswd could not hash the registry password: {proc.stderr.strip() or proc.stdout.strip()}.")
    return proc.stdout.strip() + "\n"


def ping(url: str, timeout: float = 5) -> int:
    """HTTP status of GET <url>/v2/ (401 from a registry that wants credentials); unreachable: UserError."""
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        host = url.split("://", 1)[-1]
        raise UserError(f"the registry at {host} does not answer ({reason}): start it or fix REGISTRY.") from exc


def _pid_of(directory: Path) -> int | None:
    """The pid of the registry this directory started, if that process still runs with this config."""
    try:
        pid = int((directory / "registry.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    # A recycled pid runs something else: only a docker-registry serving this very config is ours.
    config = str(directory / "config.yml").encode()
    return pid if config in cmdline and any(arg.endswith(b"docker-registry") for arg in cmdline) else None


def start_registry(directory: Path = LOCAL_DIR, *, port: int | None = None, detach: bool = False) -> LocalRegistry:
    """Start (or find running) the registry kept in `directory`; return once /v2/ answers 401.

    The port, password and storage persist in the directory, so the registry comes back at the
    same address with the same images; a port taken meanwhile by something else is replaced by a
    free one. `detach` leaves the process running after we exit (`python -m ci.publish.registry start`).
    """
    ensure_tools()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    config, htpasswd, password_file = directory / "config.yml", directory / "htpasswd", directory / "password"
    if not password_file.is_file():
        write_private(password_file, secrets.token_urlsafe(32))
    password = password_file.read_text().strip()

    if (pid := _pid_of(directory)) and (running_port := configured_port(config)):
        registry = LocalRegistry(directory, running_port, LOCAL_USER, password)
        try:
            ready = ping(registry.url) == 401
        except UserError:
            ready = False
        if not ready:
            # A second registry on the same storage would race the first: the user decides.
            raise UserError(
                f"a registry of {directory} runs (pid {pid}) but does not answer: `python -m ci.publish.registry stop`."
            )
        say(f"registry already running at {registry.host} (pid {pid}); leaving it running")
        return registry

    port = port or configured_port(config)
    if port is None or not port_is_free(port):
        port = free_port()
    write_private(htpasswd, htpasswd_entry(LOCAL_USER, password))
    secret = secrets.token_urlsafe(32)
    write_private(config, render_config(storage=directory / "storage", port=port, htpasswd=htpasswd, secret=secret))
    registry = LocalRegistry(directory, port, LOCAL_USER, password)
    with registry.log.open("ab") as log:
        # Its own session: a Ctrl-C in the terminal reaches us, and we stop the registry ourselves.
        process = subprocess.Popen(
            [shutil.which("docker-registry") or "docker-registry", "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (directory / "registry.pid").write_text(str(process.pid))
    registry.process = None if detach else process
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            last = registry.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"docker-registry exited at start ({last[0][-200:]}): read {registry.log}.")
        try:
            status = ping(registry.url, timeout=1)
        except UserError:
            time.sleep(0.2)
            continue
        if status != 401:
            _terminate(process.pid)
            raise UserError(f"127.0.0.1:{port} answered /v2/ with {status}, not 401: another server holds the port.")
        say(f"registry up at {registry.host} (storage {registry.storage}, log {registry.log})")
        return registry
    _terminate(process.pid)
    raise UserError(f"docker-registry did not answer within {READY_TIMEOUT_S} s: read {registry.log}.")


def _terminate(pid: int) -> None:
    """SIGTERM a process we started, SIGKILL it when it lingers, and reap it if it is our child."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (started by `start`): poll for it instead
            done = 0 if Path(f"/proc/{pid}").exists() else pid
        if done:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def stop_registry(registry: LocalRegistry) -> None:
    """Stop the registry if this process started it; one found running is left alone."""
    if registry.process is None:
        return
    if registry.process.poll() is None:
        registry.process.terminate()
        try:
            registry.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            registry.process.kill()
            registry.process.wait()
    (registry.directory / "registry.pid").unlink(missing_ok=True)


def main() -> None:
    """`python -m ci.publish.registry start|stop`: the default local registry in the background."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--dir", type=Path, default=LOCAL_DIR, help="the registry's directory (default: %(default)s)")
    args = parser.parse_args()
    if args.action == "stop":
        pid = _pid_of(args.dir)
        if pid is None:
            say(f"no registry of {args.dir} is running")
            return
        _terminate(pid)
        (args.dir / "registry.pid").unlink(missing_ok=True)
        say(f"registry stopped (pid {pid})")
        return
    registry = start_registry(args.dir, detach=True)
    print(f"registry: {registry.host}  user: {registry.user}  password file: {args.dir / 'password'}")
    print(f"log in:   docker login {registry.host} -u {registry.user} --password-stdin < {args.dir / 'password'}")
    print("stop:     python -m ci.publish.registry stop")


if __name__ == "__main__":
    main_guard(main)
