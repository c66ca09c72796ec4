"""The tracking server image's settings, version and labels, and the build command every image shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci.image import hermetic, tracking
from ci.image.build import IMAGES, VARIANTS
from ci.project import ROOT, UserError, sha256_file

LOCK = ROOT / "requirements-tracking.lock"


def test_params_name_the_tracking_image_its_lock_and_dockerfile():
    """params.yaml image.tracking has every key, and the lock and Dockerfile it names exist."""
    settings = tracking.settings()
    assert (ROOT / settings["lock"]) == LOCK
    assert (ROOT / settings["dockerfile"]).is_file()
    assert (*VARIANTS, tracking.NAME) == IMAGES


def test_the_version_is_mlflows_and_the_locks():
    """`<mlflow version>-<12 hex of the lock>`: the MLflow of the lock, and a new tag for any new lock."""
    version = tracking.image_version(LOCK.read_text(), LOCK.name, sha256_file(LOCK))
    mlflow = next(
        line.split("==")[1].split()[0] for line in LOCK.read_text().splitlines() if line.startswith("mlflow==")
    )
    assert version == f"{mlflow}-{sha256_file(LOCK)[:12]}"


def test_a_lock_without_mlflow_is_one_sentence():
    """A tracking lock that lost mlflow says to re-lock."""
    with pytest.raises(UserError, match=r"pins no mlflow: add it to its \.in file and run `nox -s lock`"):
        tracking.server_version("pip==1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n", "x.lock")


def test_the_tracking_lock_agrees_with_the_main_lock_but_for_graphene():
    """The server runs the main lock's versions (mlflow, sqlalchemy, alembic), except its own three pins."""
    from ci.locks import canonical, parse_lock

    main = {canonical(p.name): p.version for p in parse_lock((ROOT / "requirements.lock").read_text())}
    own = {canonical(p.name): p.version for p in parse_lock(LOCK.read_text())}
    differ = {name for name, version in own.items() if name in main and main[name] != version}
    assert differ == {"graphene", "graphql-core", "graphql-relay"}
    assert own["mlflow"] == main["mlflow"]
    assert {"tensorflow", "dvc", "pytest", "bentoml"}.isdisjoint(own)


def test_every_image_is_built_offline_with_its_args_and_labels_in_a_stable_order():
    """One build command: --network none, the spec's Dockerfile and raw tag, sorted args and labels, root context."""
    spec = hermetic.ImageSpec(
        name="tracking",
        dockerfile=ROOT / "mlflow-server/Dockerfile",
        tags=("r:1", "r:latest"),
        raw_ref="r-build:tracking",
        build_args={"B": "2", "A": "1"},
        labels={"z": "1", "a": "2"},
        file_epoch=0,
        created_epoch=0,
    )
    cmd = hermetic.docker_build_command("docker", spec)
    assert cmd[:4] == ["docker", "build", "--network", "none"]
    assert cmd[cmd.index("-f") + 1] == str(ROOT / "mlflow-server/Dockerfile")
    assert cmd[cmd.index("-t") + 1] == "r-build:tracking"
    assert [a for a in cmd if "=" in a] == ["A=1", "B=2", "a=2", "z=1"]
    assert Path(cmd[-1]) == ROOT
