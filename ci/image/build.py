"""Build the serving image: engine, base, wheelhouse, Bento, then `docker build --network none`.

What is the service's own is here: the Bento split into a code and a model layer, the labels that
name the model, the variant's lock. The rest (base, wheelhouse, the offline build, normalizing) is the
one path every image of the project takes, ci/image/hermetic.py. Prints a summary (image, ID, size,
layers) and writes build/image-<variant>.json (ci/records.py), which the contract tests and the
benchmark read to know what to run.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from ci.image.base import PACKAGE_LOCK
from ci.image.bento import build_bento
from ci.image.hermetic import ImageSpec, build_image, prepare
from ci.image.oci import rfc3339
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
    say,
    section,
    sha256_file,
    source_date_epoch,
    table,
    uncommitted_paths,
)
from ci.records import ImageRecord, write_image

VARIANTS = tuple(section("image").get("variants") or {})  # the serving image's variants
TRACKING = "tracking"  # the compose stack's MLflow server (ci/image/tracking.py), built on the same path
IMAGES = (*VARIANTS, TRACKING)  # every image `nox -s build` and `nox -s scan` take
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


def standard_labels(*, title: str, version: str, epoch: int) -> dict[str, str]:
    """The labels every image of the project carries: the OCI ones (`created` from SOURCE_DATE_EPOCH,
    never now) and the sha256 of the base-packages.lock its base was built from."""
    remote = git("remote", "get-url", "origin", default="")
    return {
        TITLE_LABEL: title,
        SOURCE_LABEL: os.environ.get("IMAGE_SOURCE", remote or "local"),
        REVISION_LABEL: revision(),
        VERSION_LABEL: version,
        CREATED_LABEL: rfc3339(epoch),
        BASE_LOCK_LABEL: lock_sha256(PACKAGE_LOCK),
    }


def oci_labels(*, version: str, model_tag: str, model_sha: str, bento_tag: str, epoch: int) -> dict[str, str]:
    """The serving image's labels: the standard ones plus the model's, the Bento's and dvc.lock's identity."""
    return {
        **standard_labels(title=section("image")["repository"], version=version, epoch=epoch),
        MODEL_TAG_LABEL: model_tag,
        MODEL_SHA_LABEL: model_sha,
        BENTO_TAG_LABEL: bento_tag,
        DVC_LOCK_LABEL: lock_sha256(DVC_LOCK),
    }


def build(variant: str = "cpu", locked: bool = False) -> ImageRecord:
    """Build one serving image variant on the project's one image path (ci/image/hermetic.py); return its record."""
    if variant not in VARIANTS:
        raise UserError(f"unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}.")
    image = section("image")
    serve = section("serve")
    inputs = prepare(ROOT / image["variants"][variant]["lock"], locked=locked)
    spec = bento_spec()
    bento = build_bento(spec=spec)
    split_bento(bento.path)
    version = bento.bento_tag.split(":", 1)[1]
    epoch = source_date_epoch()
    file_epoch = int(image["base"]["snapshot_epoch"])
    manifest = load_manifest()
    if changed := uncommitted_paths():
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        say(f"building from uncommitted changes ({shown}): the image's revision ends in {DIRTY_SUFFIX}, no release tag")
    labels = oci_labels(
        version=version, model_tag=bento.model_tag, model_sha=manifest["sha256"], bento_tag=bento.bento_tag, epoch=epoch
    )
    args = {
        "BASE_IMAGE": inputs.base_ref,
        "PIP_WHEEL": inputs.pip_wheel,
        "UID": str(image["user_uid"]),
        "PORT": str(serve["port"]),
        "MODEL_TAG": bento.model_tag,
        "BUILD_EPOCH": str(file_epoch),
        "VARIANT": variant,
    }
    ref = f"{image['repository']}:{version}-{variant}"
    record = build_image(
        inputs,
        ImageSpec(
            name=variant,
            dockerfile=spec.dockerfile,
            tags=(ref, f"{image['repository']}:latest-{variant}"),
            raw_ref=f"{build_repository(image['repository'])}:{variant}",  # docker build's own output
            build_args=args,
            labels=labels,
            file_epoch=file_epoch,
            created_epoch=epoch,
            known_repositories=(image["repository"],),
        ),
    )
    record.update(
        bento=bento.bento_tag,
        bento_digest=bento.digest,
        model_tag=bento.model_tag,
        port=serve["port"],
    )
    write_image(record, variant)
    return record


def summary(record: dict) -> str:
    """The end-of-build summary table (a serving variant names its Bento and model, the tracking server its lock)."""
    rows = [
        (f"{i}", human_bytes(layer["size"]), _short(layer["created_by"]))
        for i, layer in enumerate(record["layers"])
        if layer["size"]
    ]
    facts = [("image", record["ref"]), ("id", record["id"]), ("size", human_bytes(record["size"]))]
    if "bento" in record:
        facts += [
            ("bento", f"{record['bento']} (sha256:{record['bento_digest'][:16]})"),
            ("model", record["model_tag"]),
        ]
    if "lock" in record:
        facts.append(("lock", record["lock"]))
    facts.append(("base", f"{record['base']} (from {record.get('base_source', '?')})"))
    head = table(facts, ("", ""))
    return f"{head}\n\nlayers with content:\n{table(rows, ('#', 'size', 'instruction'))}"


def _short(created_by: str, width: int = 90) -> str:
    text = " ".join(created_by.replace("/bin/sh -c #(nop) ", "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def main() -> None:
    """`python -m ci.image.build [--variant cpu|cuda|tracking] [--locked]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="cpu", choices=IMAGES)
    parser.add_argument("--locked", action="store_true", help="fail rather than refresh base-packages.lock")
    args = parser.parse_args()
    if args.variant == TRACKING:
        # Imported here: ci/image/tracking.py builds on this module's labels.
        from ci.image import tracking

        record = tracking.build(args.locked)
    else:
        record = build(args.variant, args.locked)
    say("build finished")
    print(summary(record))


if __name__ == "__main__":
    main_guard(main)
