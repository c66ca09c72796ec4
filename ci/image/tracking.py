"""Build the compose stack's MLflow tracking server image, the way the serving image is built.

`params.yaml` → `image.tracking` names its repository, lock, Dockerfile and port. It goes through the
project's one image path (ci/image/hermetic.py): the same locally built Debian base, a wheelhouse
hashed against requirements-tracking.lock, `docker build --network none`, normalized to a reproducible
ID. Its labels are the standard ones every image carries (ci/image/build.py standard_labels) and the
sha256 of its lock; there is no model in it. Writes build/image-tracking.json (ci/records.py), which
the scan gate (`nox -s 'scan(tracking)'`), `nox -s compose` and the main job's summary read.
"""

from __future__ import annotations

from typing import Any

from ci.image.build import (
    BASE_LOCK_LABEL,
    CREATED_LABEL,
    LABEL_PREFIX,
    REVISION_LABEL,
    SOURCE_LABEL,
    TITLE_LABEL,
    VERSION_LABEL,
    lock_sha256,
    standard_labels,
)
from ci.image.hermetic import ImageSpec, build_image, prepare
from ci.locks import LockError, canonical, parse_lock
from ci.project import ROOT, UserError, build_repository, section, source_date_epoch
from ci.records import ImageRecord, write_image

NAME = "tracking"  # build/image-tracking.json; the session id: `nox -s 'build(tracking)'`
SERVER_PACKAGE = "mlflow"  # the image's version is this package's locked version
LOCK_LABEL = f"{LABEL_PREFIX}.lock.sha256"  # sha256 of requirements-tracking.lock (every Python package)
LABELS = (TITLE_LABEL, SOURCE_LABEL, REVISION_LABEL, VERSION_LABEL, CREATED_LABEL, BASE_LOCK_LABEL, LOCK_LABEL)
KEYS = ("repository", "lock", "dockerfile", "port")


def settings() -> dict[str, Any]:
    """params.yaml `image.tracking`, checked: every key, the files it names."""
    value = section("image").get("tracking")
    if not isinstance(value, dict):
        raise UserError("params.yaml has no `image.tracking` section: restore it from the template (docs/compose.md).")
    if missing := [key for key in KEYS if not value.get(key)]:
        raise UserError(f"params.yaml `image.tracking` lacks {', '.join(missing)}: add them (docs/compose.md).")
    if not (ROOT / value["dockerfile"]).is_file():
        raise UserError(f"`image.tracking.dockerfile` {value['dockerfile']} is not a file: fix params.yaml.")
    return value


def server_version(lock_text: str, lock_name: str) -> str:
    """The locked version of MLflow: what the image serves, and the first part of its tag."""
    try:
        pins = {canonical(pin.name): pin.version for pin in parse_lock(lock_text)}
    except LockError as exc:
        raise UserError(f"{lock_name}: {exc}") from exc
    if SERVER_PACKAGE not in pins:
        raise UserError(f"{lock_name} pins no {SERVER_PACKAGE}: add it to its .in file and run `nox -s lock`.")
    return pins[SERVER_PACKAGE]


def image_version(lock_text: str, lock_name: str, lock_sha: str) -> str:
    """`<mlflow version>-<12 hex of the lock's sha256>`: a new lock, a new tag, even for the same MLflow."""
    return f"{server_version(lock_text, lock_name)}-{lock_sha[:12]}"


def build(locked: bool = False) -> ImageRecord:
    """Build the tracking server image through ci/image/hermetic.py; write and return its record."""
    config = settings()
    image = section("image")
    lock = ROOT / config["lock"]
    inputs = prepare(lock, locked=locked)  # the lock's presence is checked there, in one sentence
    lock_sha = lock_sha256(lock)
    version = image_version(lock.read_text(), lock.name, lock_sha)
    epoch = source_date_epoch()
    file_epoch = int(image["base"]["snapshot_epoch"])
    labels = {**standard_labels(title=config["repository"], version=version, epoch=epoch), LOCK_LABEL: lock_sha}
    args = {
        "BASE_IMAGE": inputs.base_ref,
        "PIP_WHEEL": inputs.pip_wheel,
        "UID": str(image["user_uid"]),
        "PORT": str(config["port"]),
        "BUILD_EPOCH": str(file_epoch),
    }
    repository = config["repository"]
    record = build_image(
        inputs,
        ImageSpec(
            name=NAME,
            dockerfile=ROOT / config["dockerfile"],
            tags=(f"{repository}:{version}", f"{repository}:latest"),
            raw_ref=f"{build_repository(repository)}:{NAME}",
            build_args=args,
            labels=labels,
            file_epoch=file_epoch,
            created_epoch=epoch,
            known_repositories=(repository, image["repository"]),  # the base layer is the serving image's
        ),
    )
    record.update(port=int(config["port"]), lock=lock.relative_to(ROOT).as_posix())
    write_image(record, NAME)
    return record
