"""The local registry itself: loopback only, credentials required, secrets private, restartable in place."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from tests.registry.registries import Registry, repository

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module", name="registry")
def fixture_registry(new_registry) -> Registry:
    """One fresh, empty registry for this module."""
    return new_registry("local")


def listeners(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} writes them) of every socket listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


def test_registry_listens_on_loopback_only(registry: Registry):
    """The registry's one listening socket is 127.0.0.1, never all interfaces."""
    assert listeners(registry.current.port) == ["0100007F"]  # 127.0.0.1, little-endian hex


def test_registry_answers_only_with_credentials(registry: Registry):
    """/v2/ and a blob upload are 401 without credentials or with a wrong password, 200 with the right ones."""
    anonymous = registry.api("/v2/", auth=False)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")
    assert registry.api(f"/v2/{repository()}/blobs/uploads/", method="POST", auth=False).status_code == 401
    wrong = registry.api("/v2/", auth=False, headers={"authorization": "Basic Y2k6d3Jvbmc="})  # ci:wrong
    assert wrong.status_code == 401
    assert registry.api("/v2/").status_code == 200


def test_registry_refuses_a_manifest_whose_layers_it_does_not_hold(registry: Registry):
    """A manifest (a tag) naming blobs the registry lacks is refused: why an interrupted push leaves no tag.

    `docker push` puts the manifest only after its layers, and this refusal is the registry's own
    guard on top of that ordering: even a client that tried could not tag a half-pushed image.
    """
    missing = {"digest": "sha256:" + hashlib.sha256(b"never uploaded").hexdigest(), "size": 14}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **missing},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", **missing}],
    }
    put = registry.api(
        f"/v2/{repository()}/manifests/half-pushed",
        method="PUT",
        content=json.dumps(manifest).encode(),
        headers={"content-type": manifest["mediaType"]},
    )
    assert put.status_code == 400
    assert {error["code"] for error in put.json()["errors"]} == {"MANIFEST_BLOB_UNKNOWN"}
    assert registry.api(f"/v2/{repository()}/manifests/half-pushed").status_code == 404


def test_secrets_are_readable_by_their_owner_only(registry: Registry):
    """The password, its htpasswd entry and the config (HTTP secret) are 0600 in a 0700 directory."""
    directory = registry.current.directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("password", "htpasswd", "config.yml"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name


def test_restart_keeps_address_and_password(registry: Registry):
    """Stopped and started again, the registry has the same port and password: pushed tags stay valid."""
    host, password = registry.host, registry.current.password
    registry.stop()
    registry.restart()
    assert (registry.host, registry.current.password) == (host, password)
    assert registry.api("/v2/").status_code == 200
