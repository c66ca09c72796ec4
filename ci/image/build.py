"""Build the serving image: engine, base, wheelhouse, Bento, then `docker build --network none`.

Prints a summary (image, ID, size, layers) and writes build/image-<variant>.json (ci/records.py), which the
contract tests and the benchmark read to know what to run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

from ci.engine import ensure_engine
from ci.image.base import PACKAGE_LOCK, ensure_base_image
from ci.image.bento import build_bento
from ci.image.oci import LAYER_FORMAT, normalize_image, rfc3339
from ci.image.wheelhouse import PIP, WHEELHOUSE, assemble
from ci.project import (
    BUILD_DIR,
    DVC_LOCK,
    ROOT,
    UserError,
    bento_spec,
    build_repository,
    git,
    human_bytes,
    load_manifest,
    main_guard,
    run,
    say,
    section,
    sha256_file,
    source_date_epoch,
    step,
    table,
    uncommitted_paths,
)
from ci.records import ImageRecord, image_path, load_image, write_image

VARIANTS = tuple(section("image").get("variants") or {})
CONTEXT = BUILD_DIR / "context"  # the Bento split in two: code/ and model/ (one image layer each)
MODEL_BOUND_SOURCES = ("bentofile.yaml",)


def split_bento(bento_dir: Path, context: Path = CONTEXT) -> Path:
    """Lay the Bento out as code/src and model/<everything else> for two COPY layers.

    Everything outside src/ (bento.yaml, apis/, env/, models/, README.md), and src/bentofile.yaml
    (BentoML records the model tag in it), names the model or the Bento version, so it changes with
    the model; the rest of src/ changes only with the code. Two layers, in that order, make a
    model-only change rebuild exactly one (the last) layer.
    """
    if context.exists():
        shutil.rmtree(context)
    (context / "code").mkdir(parents=True)
    shutil.copytree(bento_dir / "src", context / "code" / "src", ignore=shutil.ignore_patterns(*MODEL_BOUND_SOURCES))

    def code_only(directory: str, names: list[str]) -> list[str]:
        if Path(directory) == bento_dir:
            return ["src"]
        return []

    shutil.copytree(bento_dir, context / "model", ignore=code_only)
    (context / "model" / "src").mkdir()
    for name in MODEL_BOUND_SOURCES:
        shutil.copy2(bento_dir / "src" / name, context / "model" / "src" / name)
    return context


# Every label the build sets, defined once: push.py and the tests read these names. The OCI ones are
# the standard annotations; the rest say which model, Bento and locks the image was built from, so an
# image can be traced to its inputs without the build record.
LABEL_PREFIX = "io.github.ml-model-image"
TITLE_LABEL = "org.opencontainers.image.title"
SOURCE_LABEL = "org.opencontainers.image.source"
REVISION_LABEL = "org.opencontainers.image.revision"
VERSION_LABEL = "org.opencontainers.image.version"
CREATED_LABEL = "org.opencontainers.image.created"
MODEL_TAG_LABEL = f"{LABEL_PREFIX}.model.tag"
MODEL_SHA_LABEL = f"{LABEL_PREFIX}.model.sha256"
BENTO_TAG_LABEL = f"{LABEL_PREFIX}.bento.tag"
BASE_LOCK_LABEL = f"{LABEL_PREFIX}.base.lock.sha256"  # sha256 of base-packages.lock (the Debian packages)
DVC_LOCK_LABEL = f"{LABEL_PREFIX}.dvc.lock.sha256"  # sha256 of dvc.lock (data, params, model hashes)
LABELS = (
    TITLE_LABEL,
    SOURCE_LABEL,
    REVISION_LABEL,
    VERSION_LABEL,
    CREATED_LABEL,
    MODEL_TAG_LABEL,
    MODEL_SHA_LABEL,
    BENTO_TAG_LABEL,
    BASE_LOCK_LABEL,
    DVC_LOCK_LABEL,
)
DIRTY_SUFFIX = "-dirty"  # ends the revision label of an image built from uncommitted changes


def revision() -> str:
    """The commit built, with `-dirty` when the checkout differs from it (so no tag claims that commit).

    Differs: a changed tracked file or an untracked, not ignored one (ci.project.uncommitted_paths).
    """
    head = git("rev-parse", "HEAD", default="unknown")
    return f"{head}{DIRTY_SUFFIX}" if uncommitted_paths() else head


def lock_sha256(path: Path) -> str:
    """sha256 of a committed lock the image is built from, or a clear error when it is missing."""
    if not path.is_file():
        raise UserError(f"{path.relative_to(ROOT)} is missing: restore it from git (`git checkout -- {path.name}`).")
    return sha256_file(path)


def oci_labels(*, version: str, model_tag: str, model_sha: str, bento_tag: str, epoch: int) -> dict[str, str]:
    """OCI annotations plus the model's and the locks' identity; `created` comes from SOURCE_DATE_EPOCH, never now."""
    remote = git("remote", "get-url", "origin", default="")
    return {
        TITLE_LABEL: section("image")["repository"],
        SOURCE_LABEL: os.environ.get("IMAGE_SOURCE", remote or "local"),
        REVISION_LABEL: revision(),
        VERSION_LABEL: version,
        CREATED_LABEL: rfc3339(epoch),
        MODEL_TAG_LABEL: model_tag,
        MODEL_SHA_LABEL: model_sha,
        BENTO_TAG_LABEL: bento_tag,
        BASE_LOCK_LABEL: lock_sha256(PACKAGE_LOCK),
        DVC_LOCK_LABEL: lock_sha256(DVC_LOCK),
    }


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


def build_args(values: dict[str, str]) -> list[str]:
    """`--build-arg KEY=value` pairs, in a stable order."""
    return [arg for key, value in sorted(values.items()) for arg in ("--build-arg", f"{key}={value}")]


def previous_record(variant: str) -> ImageRecord | None:
    """The last record of `variant`, if any (for the no-op shortcut and the layers it shares)."""
    return load_image(variant) if image_path(variant).is_file() else None


def build(variant: str = "cpu", locked: bool = False) -> ImageRecord:
    """Build one image variant, normalize it (ci/image/oci.py) and return its record."""
    if variant not in VARIANTS:
        raise UserError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}.")
    image = section("image")
    serve = section("serve")
    docker = ensure_engine()
    base_ref, base = ensure_base_image(image["repository"], locked=locked)
    lock = ROOT / image["variants"][variant]["lock"]
    # Every wheel is hashed again here, pip's own first (it installs the rest, checking their hashes).
    wheels = assemble(lock, WHEELHOUSE)
    if PIP not in wheels:
        raise UserError(f"{lock.name} pins no pip, which installs the wheels in the image: run `nox -s lock`.")
    shutil.copy2(lock, WHEELHOUSE / "requirements.lock")  # the Dockerfile installs /wheels/requirements.lock
    spec = bento_spec()
    bento = build_bento(spec=spec)
    split_bento(bento.path)
    version = bento.bento_tag.split(":", 1)[1]
    ref = f"{image['repository']}:{version}-{variant}"
    raw_ref = f"{build_repository(image['repository'])}:{variant}"  # docker build's own output, before normalizing
    epoch = source_date_epoch()
    file_epoch = int(image["base"]["snapshot_epoch"])
    manifest = load_manifest()
    if changed := uncommitted_paths():
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        say(f"building from uncommitted changes ({shown}): the image's revision ends in {DIRTY_SUFFIX}, no release tag")
    labels = oci_labels(
        version=version, model_tag=bento.model_tag, model_sha=manifest["sha256"], bento_tag=bento.bento_tag, epoch=epoch
    )
    cmd = [docker, "build", "--network", "none", "--progress", "plain", "-f", str(spec.dockerfile), "-t", raw_ref]
    # Recorded as passed: the scan gate evaluates the Dockerfile's policies with these very values.
    args = {
        "BASE_IMAGE": base_ref,
        "PIP_WHEEL": wheels[PIP].name,
        "UID": str(image["user_uid"]),
        "PORT": str(serve["port"]),
        "MODEL_TAG": bento.model_tag,
        "BUILD_EPOCH": str(file_epoch),
        "VARIANT": variant,
    }
    cmd += build_args(args)
    for key, value in sorted(labels.items()):
        cmd += ["--label", f"{key}={value}"]
    with step(f"docker build {raw_ref} (network: none)"):
        run([*cmd, str(ROOT)], env={"DOCKER_BUILDKIT": "1"})
    raw_id = json.loads(run([docker, "image", "inspect", raw_ref], capture_output=True, text=True).stdout)[0]["Id"]
    tags = [ref, f"{image['repository']}:latest-{variant}"]
    before = previous_record(variant)
    # Images whose layers the engine holds: a layer shared with one of them is not loaded again.
    listed = run([docker, "image", "ls", "-q", "--no-trunc", image["repository"]], capture_output=True, text=True)
    known = sorted({*listed.stdout.split(), *(r["id"] for v in VARIANTS if (r := previous_record(v)))})
    # The normalizer's format is part of "same": an image normalized by older code is redone.
    same = (
        before
        and before.get("raw_id") == raw_id
        and before.get("epochs") == [file_epoch, epoch]
        and before.get("layer_format") == LAYER_FORMAT
    )
    if same and subprocess.run([docker, "image", "inspect", before["id"]], capture_output=True).returncode == 0:
        say(f"unchanged since the last build: {before['id']}")
        normalized_id, listings = before["id"], before["listings"]
        for tag in tags:
            run([docker, "tag", normalized_id, tag], capture_output=True)
    else:
        with step("normalizing the image (file times, ordering, config, history)"):
            result = normalize_image(
                docker, raw_ref, tags, file_epoch=file_epoch, created_epoch=epoch, known_images=known
            )
        normalized_id, listings = result.id, result.listings
    inspect = json.loads(run([docker, "image", "inspect", ref], capture_output=True, text=True).stdout)[0]
    layers = layer_table(docker, ref)
    record: ImageRecord = {
        "variant": variant,
        "ref": ref,
        "id": normalized_id,
        "raw_id": raw_id,
        "epochs": [file_epoch, epoch],
        "layer_format": LAYER_FORMAT,
        "listings": listings,
        "size": inspect["Size"],
        "rootfs_layers": inspect["RootFS"]["Layers"],
        "layers": [{"created_by": c, "size": s} for c, s in layers],
        "base": base_ref,
        "base_source": base.source,
        "base_lock_changes": base.lock_changes,
        "bento": bento.bento_tag,
        "bento_digest": bento.digest,
        "model_tag": bento.model_tag,
        "labels": labels,
        "port": serve["port"],
        "dockerfile": spec.dockerfile.relative_to(ROOT).as_posix(),
        "build_args": args,
    }
    write_image(record, variant)
    return record


def summary(record: dict) -> str:
    """The end-of-build summary table."""
    rows = [
        (f"{i}", human_bytes(layer["size"]), _short(layer["created_by"]))
        for i, layer in enumerate(record["layers"])
        if layer["size"]
    ]
    head = table(
        [
            ("image", record["ref"]),
            ("id", record["id"]),
            ("size", human_bytes(record["size"])),
            ("bento", f"{record['bento']} (sha256:{record['bento_digest'][:16]})"),
            ("model", record["model_tag"]),
            ("base", f"{record['base']} (from {record.get('base_source', '?')})"),
        ],
        ("", ""),
    )
    return f"{head}\n\nlayers with content:\n{table(rows, ('#', 'size', 'instruction'))}"


def _short(created_by: str, width: int = 90) -> str:
    text = " ".join(created_by.replace("/bin/sh -c #(nop) ", "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def main() -> None:
    """`python -m ci.image.build [--variant cpu] [--locked]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="cpu", choices=VARIANTS)
    parser.add_argument("--locked", action="store_true", help="fail rather than refresh base-packages.lock")
    args = parser.parse_args()
    record = build(args.variant, args.locked)
    say("build finished")
    print(summary(record))


if __name__ == "__main__":
    main_guard(main)
