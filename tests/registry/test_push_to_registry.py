"""`nox -s push` against a real registry: refused without credentials, a registry killed mid-push, then
the push run again completes it, the image pulled by digest is the same, and a second push sends no layer.

The story runs on one registry, in the order a user lives it; each step is a session fixture that
needs the one before, so any single test can run alone (`-k`) and still sees the same history.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from ci.project import ROOT
from ci.publish import push
from tests.registry.registries import PUSH_TIMEOUT_S, Registry, push_command, push_env, repository, run_push

pytestmark = pytest.mark.registry

MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
GIVE_UP_TIMEOUT_S = 180  # docker retries a failed layer for ~50 s (5 + 10 + 15 + 20 s) before it gives up


def expected_tags(image: dict) -> list[str]:
    """The tags `nox -s push` gives the CPU image (the tag rules themselves are unit-tested)."""
    labels = image["labels"]
    revision, _ = push.built_from(labels)
    version = push.image_version(labels, None)
    return push.push_tags("cpu", labels, version=version, revision=revision, allow_dirty=True)


def manifest_status(registry: Registry, reference: str) -> tuple[int, str | None]:
    """HTTP status of the manifest `reference` (a tag or digest) and the digest the registry gives it."""
    response = registry.api(f"/v2/{repository()}/manifests/{reference}", headers={"accept": MANIFEST_TYPES})
    return response.status_code, response.headers.get("docker-content-digest")


def tags_in(registry: Registry) -> list[str]:
    """Tags the registry lists for the repository ([] when it has none, 404 NAME_UNKNOWN)."""
    response = registry.api(f"/v2/{repository()}/tags/list")
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return response.json().get("tags") or []


def error_line(result: subprocess.CompletedProcess) -> str:
    """The last line the push wrote to stderr: its one-sentence error."""
    return result.stderr.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------- refused


@pytest.fixture(scope="module", name="auth_registry")
def fixture_auth_registry(new_registry) -> Registry:
    """A fresh registry for the refusals."""
    return new_registry("auth")


def test_anonymous_push_is_refused(auth_registry: Registry, image: dict, tmp_path: Path):
    """Without credentials the registry refuses the push (401), the error says what to set, nothing is uploaded."""
    result = run_push(auth_registry, tmp_path)
    assert result.returncode == 1, result.stderr
    assert error_line(result) == (
        f"error: the registry at {auth_registry.host} refused an anonymous push: set REGISTRY_USER and "
        f"REGISTRY_PASSWORD (or `docker login {auth_registry.host}`) and run `nox -s push` again."
    )
    assert "Traceback" not in result.stderr
    # docker gave up at the registry's 401 Basic challenge: it had no credentials to answer with.
    assert any('HTTP/1.1" 401 ' in line and '"docker/' in line for line in auth_registry.log_lines())
    assert auth_registry.upload_requests() == []
    assert tags_in(auth_registry) == []
    assert auth_registry.blob_bytes() == 0


def test_wrong_password_is_refused_at_login(auth_registry: Registry, image: dict, tmp_path: Path):
    """A wrong REGISTRY_PASSWORD stops the push at `docker login`, with one sentence naming the variables."""
    result = run_push(auth_registry, tmp_path, user=auth_registry.current.user, password="wrong")
    assert result.returncode == 1
    assert error_line(result) == (
        f"error: the registry at {auth_registry.host} refused the login of {auth_registry.current.user}: "
        "check REGISTRY_USER and REGISTRY_PASSWORD."
    )


# ------------------------------------------------------------------- killed mid-push, then again


@dataclass
class Interrupted:
    """What happened when the registry was killed in the middle of the big layer's upload."""

    registry: Registry
    result: subprocess.CompletedProcess
    received_at_kill: int  # bytes of the big layer the registry held when it died
    running_at_kill: bool
    manifests_before_kill: list[str]  # access-log lines of manifest PUTs before the kill (tags)


@pytest.fixture(scope="module", name="interrupted")
def fixture_interrupted(new_registry, image: dict, tmp_path_factory) -> Interrupted:
    """Push to an empty registry and SIGKILL it once the big layer is well under way; start it again after."""
    registry = new_registry("interrupted")
    out = tmp_path_factory.mktemp("interrupted")
    (out / "docker-config").mkdir()
    # The two big layers (the Debian base and the Python environment, ~165 and ~220 MB, ~60-75 MB
    # compressed) upload at the same time. An upload past 8 MiB, more than the small layers (code,
    # model) hold even uncompressed, is one of them well under way: the kill lands mid-upload, and
    # the biggest layer, the last to finish, is still being received.
    sizes = sorted(layer["size"] for layer in image["layers"])
    threshold = max(8 << 20, int(sizes[-3] * 2))
    assert sizes[-2] > 4 * threshold, "the image has no layers big enough to interrupt"
    log_start = len(registry.log_lines())
    env = push_env(registry, out / "docker-config", user=registry.current.user, password=registry.current.password)
    with (out / "stdout").open("w") as stdout, (out / "stderr").open("w") as stderr:
        proc = subprocess.Popen(push_command(out), cwd=ROOT, env=env, stdout=stdout, stderr=stderr, text=True)
        deadline = time.monotonic() + PUSH_TIMEOUT_S
        while (received := registry.partial_upload_bytes()) < threshold:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the big layer's upload never reached {threshold} bytes: {(out / 'stderr').read_text()}")
            time.sleep(0.02)
        running = proc.poll() is None
        registry.kill()
        manifests = [line for line in registry.log_lines()[log_start:] if '"PUT /v2/' in line and "/manifests/" in line]
        try:
            proc.wait(GIVE_UP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"the push did not give up within {GIVE_UP_TIMEOUT_S} s of the registry's death")
    registry.restart()
    result = subprocess.CompletedProcess(
        proc.args, proc.returncode, (out / "stdout").read_text(), (out / "stderr").read_text()
    )
    return Interrupted(registry, result, received, running, manifests)


def test_registry_killed_mid_push_is_one_clear_error(interrupted: Interrupted, image: dict):
    """The push fails with one sentence: the registry went away, nothing was tagged, run `nox -s push` again."""
    assert interrupted.running_at_kill
    assert interrupted.result.returncode == 1
    first_ref = f"{interrupted.registry.host}/{repository()}:{expected_tags(image)[0]}"
    assert error_line(interrupted.result) == (
        f"error: the registry went away during the push of {first_ref}; nothing was tagged; run `nox -s push` again."
    )
    assert "Traceback" not in interrupted.result.stderr


def test_registry_killed_mid_push_leaves_no_tag(interrupted: Interrupted, image: dict):
    """Killed while the big layer was half uploaded, before any manifest: no tag exists (404), none is listed."""
    assert interrupted.received_at_kill > 0
    assert interrupted.manifests_before_kill == []
    assert tags_in(interrupted.registry) == []
    for tag in expected_tags(image):
        assert manifest_status(interrupted.registry, tag) == (404, None), tag


@pytest.fixture(scope="module", name="completed")
def fixture_completed(interrupted: Interrupted, tmp_path_factory) -> tuple[Registry, subprocess.CompletedProcess, dict]:
    """`nox -s push` run again, after the interrupted one: (registry, its result, its push record)."""
    registry, out = interrupted.registry, tmp_path_factory.mktemp("completed")
    result = run_push(registry, out, user=registry.current.user, password=registry.current.password)
    assert result.returncode == 0, result.stderr
    return registry, result, json.loads((out / "push-cpu.json").read_text())


def test_push_again_completes_and_prints_the_digest(completed, image: dict):
    """Run again, the push finishes: every tag names the printed digest, and the big layer was sent."""
    registry, result, record = completed
    assert record["digest"] in result.stdout  # the summary table
    assert f"docker pull {registry.host}/{repository()}@{record['digest']}" in result.stdout
    assert record["tags"] == expected_tags(image)
    assert sorted(tags_in(registry)) == sorted(record["tags"])
    for tag in record["tags"]:
        assert manifest_status(registry, tag) == (200, record["digest"]), tag
    assert record["verified"] is True
    biggest = max(record["layers"], key=lambda layer: layer["size"])
    assert biggest["sent"] is True
    assert record["pushed"]["layers"] + record["reused"]["layers"] == len(image["rootfs_layers"])


def test_layers_finished_before_the_kill_are_not_sent_again(completed):
    """The small layers the registry got whole before it died are reused by the push that completes it."""
    _, _, record = completed
    assert record["reused"]["layers"] >= 1
    assert all(layer["status"] in ("Pushed", "Layer already exists") for layer in record["layers"])


def test_pull_by_digest_gives_the_same_image(completed, image: dict, docker: str, tmp_path: Path):
    """`docker pull repo@digest` gives the built image's ID, and every blob behind the digest is the image's bytes.

    The engine already holds the image, so `docker pull` alone only proves the config matches; each
    layer is therefore downloaded, checked against its digest, gunzipped and checked against the
    image's own layer (diff) ID: exactly what a pull on a machine without the image would check.
    """
    registry, _, record = completed
    by_digest = f"{registry.host}/{repository()}@{record['digest']}"
    (tmp_path / "docker-config").mkdir()
    env = {"DOCKER_CONFIG": str(tmp_path / "docker-config")}
    login = [docker, "login", registry.host, "-u", registry.current.user, "--password-stdin"]
    subprocess.run(login, input=registry.current.password, env=env, check=True, capture_output=True, text=True)
    subprocess.run([docker, "pull", by_digest], env=env, check=True, capture_output=True, timeout=PUSH_TIMEOUT_S)
    pulled = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", by_digest], capture_output=True, text=True
    )
    assert pulled.stdout.strip() == image["id"]

    manifest = registry.api(f"/v2/{repository()}/manifests/{record['digest']}", headers={"accept": MANIFEST_TYPES})
    assert "sha256:" + hashlib.sha256(manifest.content).hexdigest() == record["digest"]
    body = manifest.json()
    config = registry.api(f"/v2/{repository()}/blobs/{body['config']['digest']}")
    assert "sha256:" + hashlib.sha256(config.content).hexdigest() == image["id"]
    assert json.loads(config.content)["rootfs"]["diff_ids"] == image["rootfs_layers"]
    for blob, diff_id in zip(body["layers"], image["rootfs_layers"], strict=True):
        compressed, uncompressed = hashlib.sha256(), hashlib.sha256()
        gunzip = zlib.decompressobj(wbits=31)
        with registry.stream(f"/v2/{repository()}/blobs/{blob['digest']}") as response:
            for chunk in response.iter_bytes(1 << 20):
                compressed.update(chunk)
                uncompressed.update(gunzip.decompress(chunk))
        uncompressed.update(gunzip.flush())
        assert "sha256:" + compressed.hexdigest() == blob["digest"]
        assert "sha256:" + uncompressed.hexdigest() == diff_id


@pytest.fixture(scope="module", name="repushed")
def fixture_repushed(completed, tmp_path_factory) -> tuple[Registry, dict, list[str], int, int]:
    """A second push of the same image: (registry, its record, upload requests it made, blob bytes before, after)."""
    registry, _, first = completed
    out = tmp_path_factory.mktemp("repushed")
    log_start, bytes_before = len(registry.log_lines()), registry.blob_bytes()
    result = run_push(registry, out, user=registry.current.user, password=registry.current.password)
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "push-cpu.json").read_text())
    assert record["digest"] == first["digest"]
    return registry, record, registry.upload_requests(log_start), bytes_before, registry.blob_bytes()


def test_second_push_sends_no_layer_bytes(repushed, image: dict):
    """Pushing an image the registry holds: every layer 'already exists', no upload request, no byte stored."""
    _, record, uploads, bytes_before, bytes_after = repushed
    assert record["pushed"] == {"layers": 0, "bytes": 0}
    assert record["reused"]["layers"] == len(image["rootfs_layers"])
    assert uploads == []  # the registry's own access log: no POST/PATCH/PUT to blobs/uploads
    assert bytes_after == bytes_before
