"""What the image is: non-root, health-checked, labelled, and free of build tools."""

from __future__ import annotations

import json
import subprocess

import pytest

from ci.image.base import PACKAGE_LOCK
from ci.image.build import (
    BASE_LOCK_LABEL,
    CREATED_LABEL,
    DVC_LOCK_LABEL,
    LABELS,
    MODEL_SHA_LABEL,
    MODEL_TAG_LABEL,
)
from ci.project import DVC_LOCK, sha256_file

pytestmark = pytest.mark.container


@pytest.fixture(scope="module", name="config")
def fixture_config(docker, image) -> dict:
    out = subprocess.run([docker, "image", "inspect", image["ref"]], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]["Config"]


def test_runs_as_non_root(config):
    """The default user is a numeric non-root uid."""
    user = config["User"].split(":")[0]
    assert user
    assert user not in ("0", "root")


def test_has_healthcheck_and_exec_form_entrypoint(config):
    """HEALTHCHECK is set, and the entrypoint is a JSON array (signals reach the server)."""
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert isinstance(config["Entrypoint"], list)
    assert config["Entrypoint"][0].startswith("/")


def test_oci_labels_and_model_identity(config, image, manifest):
    """Every label the build sets is present; the model labels match the manifest; created is not 'now'."""
    labels = config["Labels"]
    for key in LABELS:
        assert labels.get(key), key
    assert labels[MODEL_SHA_LABEL] == manifest["sha256"]
    assert labels[MODEL_TAG_LABEL].endswith(manifest["version"])
    assert labels[CREATED_LABEL] == image["labels"][CREATED_LABEL]


def test_labels_name_the_locks_it_was_built_from(config):
    """The image says which base-packages.lock and dvc.lock it was built from: those of this checkout."""
    labels = config["Labels"]
    assert labels[BASE_LOCK_LABEL] == sha256_file(PACKAGE_LOCK)
    assert labels[DVC_LOCK_LABEL] == sha256_file(DVC_LOCK)


def test_no_compilers_git_pip_or_package_caches(docker, image):
    """The runtime image carries no compiler, git, pip, or apt/pip caches."""
    script = (
        "for t in gcc cc g++ make git pip pip3 curl wget; do command -v $t && echo FOUND $t; done; "
        "/opt/venv/bin/python -c 'import pip' 2>/dev/null && echo FOUND pip-module; "
        "ls /var/lib/apt/lists | grep -v -e lock -e partial; ls /var/cache/apt/archives | grep deb; "
        "ls -A /root/.cache 2>/dev/null; true"
    )
    out = subprocess.run(
        [docker, "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image["ref"], "-c", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == ""


def test_model_is_the_last_layer(image):
    """Dependencies, then code, then the model: a new model rebuilds only the last layer."""
    created = [layer["created_by"] for layer in image["layers"] if layer["size"]]
    assert "/opt/venv" in created[-3]
    assert "pip" in created[-3]
    assert "build/context/code" in created[-2]
    assert "build/context/model" in created[-1]
