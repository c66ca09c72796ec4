"""The one path every image of the project takes: locked base, hashed wheelhouse, offline build, normalize.

The serving image (ci/image/build.py, one per variant) and the compose stack's MLflow tracking server
(ci/image/tracking.py) differ only in what they install and what they say about themselves. What
makes an image of this project trustworthy is done here, once, for both:

    prepare(lock)         the locked Debian base in the engine (ci/image/base.py) and build/wheelhouse
                          holding exactly the wheels of `lock`, each hashed again (ci/image/wheelhouse.py)
    build_image(spec)     `docker build --network none` of the spec's Dockerfile with BuildKit, then
                          normalized to a reproducible ID (ci/image/oci.py) and tagged; a rebuild whose
                          raw image and epochs equal the last record's is a no-op; returns the record
                          fields every image has (ci/records.py ImageRecord), which the caller completes
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ci.engine import ensure_engine
from ci.image.base import BaseResult, ensure_base_image
from ci.image.oci import LAYER_FORMAT, normalize_image
from ci.image.wheelhouse import PIP, WHEELHOUSE, assemble
from ci.project import ROOT, UserError, run, say, section, step
from ci.records import ImageRecord, image_path, load_image, recorded_variants

# The Dockerfiles install /wheels/requirements.lock: the lock of the image being built, copied here.
WHEELHOUSE_LOCK = "requirements.lock"


@dataclass(frozen=True)
class Inputs:
    """What an image is built from besides its Dockerfile: the base in the engine, the wheelhouse's pip."""

    docker: str
    base_ref: str
    base: BaseResult
    pip_wheel: str  # the file name of pip's wheel in build/wheelhouse (the build runs pip from it)


@dataclass(frozen=True)
class ImageSpec:
    """One image to build: its record name, Dockerfile, names, build arguments and labels."""

    name: str  # build/image-<name>.json: a serving variant (cpu, cuda) or "tracking"
    dockerfile: Path
    tags: tuple[str, ...]  # the normalized image's tags, the first is its reference in the record
    raw_ref: str  # where `docker build` puts its own output, before normalizing
    build_args: Mapping[str, str]  # recorded: the scan gate evaluates the Dockerfile with these values
    labels: Mapping[str, str]
    file_epoch: int  # every file's mtime in the image (the base snapshot epoch)
    created_epoch: int  # the config's and history's `created` (SOURCE_DATE_EPOCH)
    known_repositories: tuple[str, ...] = ()  # images whose layers the engine may already hold


def prepare(lock: Path, *, locked: bool = False) -> Inputs:
    """An engine, the locked base image in it, and build/wheelhouse holding exactly `lock`'s wheels."""
    docker = ensure_engine()
    base_ref, base = ensure_base_image(section("image")["repository"], locked=locked)
    # Every wheel is hashed again here, pip's own first (it installs the rest, checking their hashes).
    wheels = assemble(lock, WHEELHOUSE)
    if PIP not in wheels:
        raise UserError(f"{lock.name} pins no pip, which installs the wheels in the image: run `nox -s lock`.")
    shutil.copy2(lock, WHEELHOUSE / WHEELHOUSE_LOCK)
    return Inputs(docker, base_ref, base, wheels[PIP].name)


def build_args(values: Mapping[str, str]) -> list[str]:
    """`--build-arg KEY=value` pairs, in a stable order."""
    return [arg for key, value in sorted(values.items()) for arg in ("--build-arg", f"{key}={value}")]


def previous_record(name: str) -> ImageRecord | None:
    """The last record of image `name`, if any (for the no-op shortcut and the layers it shares)."""
    return load_image(name) if image_path(name).is_file() else None


def layer_table(docker: str, ref: str) -> list[tuple[str, int]]:
    """(instruction, size in bytes) for every layer of the image, oldest first."""
    out = subprocess.run(
        [docker, "history", "--no-trunc", "--format", "{{.CreatedBy}}\t{{.Size}}", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in reversed(out.strip().splitlines()):
        created_by, _, size = line.partition("\t")
        rows.append((created_by, _parse_size(size)))
    return rows


def _parse_size(text: str) -> int:
    units = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * units[unit])
    return int(float(text or 0))


def docker_build_command(docker: str, spec: ImageSpec) -> list[str]:
    """`docker build --network none` of the spec from the repository root (.dockerignore narrows the context)."""
    cmd = [docker, "build", "--network", "none", "--progress", "plain", "-f", str(spec.dockerfile), "-t", spec.raw_ref]
    cmd += build_args(spec.build_args)
    for key, value in sorted(spec.labels.items()):
        cmd += ["--label", f"{key}={value}"]
    return [*cmd, str(ROOT)]


def known_images(docker: str, spec: ImageSpec) -> list[str]:
    """Images whose layers the engine holds: a layer shared with one of them is not loaded again."""
    listed: set[str] = set()
    for repository in spec.known_repositories:
        out = run([docker, "image", "ls", "-q", "--no-trunc", repository], capture_output=True, text=True)
        listed.update(out.stdout.split())
    recorded = {r["id"] for name in recorded_variants(image_path) if (r := previous_record(name)) and "id" in r}
    return sorted(listed | recorded)


def build_image(inputs: Inputs, spec: ImageSpec) -> ImageRecord:
    """Build the spec offline, normalize it, tag it; return the record fields every image has."""
    docker = inputs.docker
    with step(f"docker build {spec.raw_ref} (network: none)"):
        run(docker_build_command(docker, spec), env={"DOCKER_BUILDKIT": "1"})
    raw_id = json.loads(run([docker, "image", "inspect", spec.raw_ref], capture_output=True, text=True).stdout)[0]["Id"]
    before = previous_record(spec.name)
    known = known_images(docker, spec)
    epochs = [spec.file_epoch, spec.created_epoch]
    # The normalizer's format is part of "same": an image normalized by older code is redone.
    same = (
        before
        and before.get("raw_id") == raw_id
        and before.get("epochs") == epochs
        and before.get("layer_format") == LAYER_FORMAT
    )
    if same and subprocess.run([docker, "image", "inspect", before["id"]], capture_output=True).returncode == 0:
        say(f"unchanged since the last build: {before['id']}")
        normalized_id, listings = before["id"], before["listings"]
        for tag in spec.tags:
            run([docker, "tag", normalized_id, tag], capture_output=True)
    else:
        with step("normalizing the image (file times, ordering, config, history)"):
            result = normalize_image(
                docker,
                spec.raw_ref,
                list(spec.tags),
                file_epoch=spec.file_epoch,
                created_epoch=spec.created_epoch,
                known_images=known,
            )
        normalized_id, listings = result.id, result.listings
    ref = spec.tags[0]
    inspect = json.loads(run([docker, "image", "inspect", ref], capture_output=True, text=True).stdout)[0]
    return {
        "variant": spec.name,
        "ref": ref,
        "id": normalized_id,
        "raw_id": raw_id,
        "epochs": epochs,
        "layer_format": LAYER_FORMAT,
        "listings": listings,
        "size": inspect["Size"],
        "rootfs_layers": inspect["RootFS"]["Layers"],
        "layers": [{"created_by": c, "size": s} for c, s in layer_table(docker, ref)],
        "base": inputs.base_ref,
        "base_source": inputs.base.source,
        "base_lock_changes": inputs.base.lock_changes,
        "labels": dict(spec.labels),
        "dockerfile": spec.dockerfile.relative_to(ROOT).as_posix(),
        "build_args": dict(spec.build_args),
    }
