"""Hand a built image from one CI job to the next: `docker save` it once, `docker load` it and prove it.

In GitHub Actions each variant is built once, by the `build` job; `test`, `scan` and `push` act on
that very image, never on a rebuild. The image travels between jobs as a workflow artifact, not
through a registry: pull-request runs have a read-only token, and nothing reaches the registry
before every check has passed.

    save --variant X    build/images/X.tar        `docker save` of the normalized image (streamed, hashed)
                        build/images/X.bento.tar  build/bento/, the Bento it was built from (for the scan)
                        build/images/X.json       the build record (build/image-X.json) + both archives' sha256
    load [--variant X]  checks both archives against X.json, `docker load`s the image, checks the engine
                        now holds the recorded image ID (the digest of its config, which names every
                        layer), restores build/bento/ and puts the record back at build/image-X.json,
                        where the contract tests, the scan and push read it. Without --variant: every
                        archive in the directory.

The directory is IMAGE_ARCHIVE_DIR (relative to the repository) or build/images. When
IMAGE_ARCHIVE_DIR is set, the nox sessions test, scan and push load from it instead of building.
Every mismatch ends in one sentence; nothing is ever rebuilt here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

from ci import records
from ci.engine import ensure_engine
from ci.image import build as build_image
from ci.project import (
    BENTO_DIR,
    BUILD_DIR,
    ROOT,
    UserError,
    human_bytes,
    main_guard,
    say,
    sha256_file,
    step,
    table,
    tree_digest,
)

ENV_VAR = "IMAGE_ARCHIVE_DIR"  # the workflow sets it in the jobs that get the image from `build`
ARCHIVE_DIR = BUILD_DIR / "images"
CHUNK = 1 << 20


def archive_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """IMAGE_ARCHIVE_DIR (relative paths are relative to the repository), else build/images."""
    value = environ.get(ENV_VAR)
    if not value:
        return ARCHIVE_DIR
    path = Path(value)
    return path if path.is_absolute() else ROOT / path


def paths(variant: str, directory: Path) -> dict[str, Path]:
    """The three files of one variant's hand-over."""
    return {
        "image": directory / f"{variant}.tar",
        "bento": directory / f"{variant}.bento.tar",
        "record": directory / f"{variant}.json",
    }


def image_id(docker: str, ref: str) -> str:
    """The ID of the image `ref` names in the engine, or "" when it has none."""
    proc = subprocess.run([docker, "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def save_image(docker: str, ref: str, out: Path) -> tuple[str, int]:
    """Stream `docker save ref` into `out`, hashing as it goes; (sha256, size).

    Written beside `out` and renamed at the end, so a half-written archive never has its name.
    Readable by all (0644): the job saves as root (sudo), upload-artifact reads as the runner user.
    """
    partial = out.with_name(out.name + ".partial")
    digest, size = hashlib.sha256(), 0
    with partial.open("wb") as fh, subprocess.Popen([docker, "save", ref], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read(CHUNK), b""):
            digest.update(chunk)
            fh.write(chunk)
            size += len(chunk)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise UserError(f"`docker save {ref}` failed with exit code {proc.returncode}; see its output above.")
    partial.chmod(0o644)
    partial.replace(out)
    return digest.hexdigest(), size


def save_bento(bento_dir: Path, out: Path) -> str:
    """build/bento/ as a tar (an artifact would lose the files' modes, which the Bento's digest covers)."""
    with tarfile.open(out, "w") as tar:
        tar.add(bento_dir, arcname=".", filter=_normalize_member)
    out.chmod(0o644)
    return sha256_file(out)


def _normalize_member(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def save(variant: str, directory: Path = ARCHIVE_DIR, *, docker: str | None = None) -> dict:
    """Write the hand-over of the image `nox -s 'build(variant)'` recorded; return its record."""
    record = records.load_image(variant)
    docker = docker or ensure_engine()
    found = image_id(docker, record["ref"])
    if found != record["id"]:
        held = f"is {found}" if found else "is not in the engine"
        raise UserError(
            f"{record['ref']} {held}, not the {record['id']} that {_display(records.image_path(variant))} "
            f"records: run `nox -s 'build({variant})'` again, then save."
        )
    if not BENTO_DIR.is_dir() or tree_digest(BENTO_DIR) != record.get("bento_digest"):
        raise UserError(
            f"{_display(BENTO_DIR)} is not the Bento the {variant} image was built from: "
            f"run `nox -s 'build({variant})'` again, then save."
        )
    files = paths(variant, directory)
    directory.mkdir(parents=True, exist_ok=True)
    with step(f"docker save {record['ref']} > {_display(files['image'])}"):
        image_sha, image_size = save_image(docker, record["ref"], files["image"])
    bento_sha = save_bento(BENTO_DIR, files["bento"])
    handed = {
        **record,
        "archive": {"sha256": image_sha, "size": image_size},
        "bento_archive": {"sha256": bento_sha, "size": files["bento"].stat().st_size},
    }
    files["record"].write_text(json.dumps(handed, indent=2, sort_keys=True) + "\n")
    files["record"].chmod(0o644)
    return handed


def _check_archive(path: Path, expected: dict, what: str) -> None:
    if not path.is_file():
        raise UserError(f"{_display(path)} is missing: download the build job's whole image artifact.")
    size, sha = path.stat().st_size, sha256_file(path)
    if (sha, size) != (expected.get("sha256"), expected.get("size")):
        raise UserError(
            f"{_display(path)} is not the {what} the build job saved (sha256 {sha[:16]}…, {size} bytes; "
            f"expected {str(expected.get('sha256'))[:16]}…, {expected.get('size')} bytes): download it again."
        )


def restore_bento(archive: Path, bento_dir: Path, digest: str) -> None:
    """Unpack the Bento to bento_dir (replacing what is there) and check its digest against the record."""
    if bento_dir.exists():
        shutil.rmtree(bento_dir)
    bento_dir.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(bento_dir, filter="data")
    if tree_digest(bento_dir) != digest:
        raise UserError(f"{_display(archive)} unpacks to another Bento than the image was built from: build again.")


def load(variant: str, directory: Path = ARCHIVE_DIR, *, docker: str | None = None) -> dict:
    """Load one variant's hand-over into the engine, prove it is the recorded image; return the record."""
    files = paths(variant, directory)
    if not files["record"].is_file():
        raise UserError(
            f"no {variant} image in {_display(directory)}: download the build job's `image-{variant}` "
            f"artifact there, or unset {ENV_VAR} to build the image here."
        )
    handed = json.loads(files["record"].read_text())
    _check_archive(files["image"], handed.get("archive") or {}, "image archive")
    _check_archive(files["bento"], handed.get("bento_archive") or {}, "Bento archive")
    docker = docker or ensure_engine()
    with step(f"docker load < {_display(files['image'])}"):
        proc = subprocess.run([docker, "load", "-i", str(files["image"])], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"`docker load -i {_display(files['image'])}` failed: {last[0]}.")
    loaded = image_id(docker, handed["ref"])
    if loaded != handed["id"]:
        raise UserError(
            f"{_display(files['image'])} loads as {handed['ref']} = {loaded or 'nothing'}, not the {handed['id']} "
            f"the build job recorded: the archive is not the built image; re-run the workflow from `build`."
        )
    restore_bento(files["bento"], BENTO_DIR, handed["bento_digest"])
    record = {k: v for k, v in handed.items() if k not in ("archive", "bento_archive")}
    records.write_image(record, variant)
    return handed


def variants_in(directory: Path) -> list[str]:
    """The variants whose hand-over record lies in `directory`."""
    known = set(build_image.VARIANTS)
    return sorted(p.stem for p in directory.glob("*.json") if p.stem in known)


def summary(records: list[dict], verb: str) -> str:
    """One row per image handed over: variant, reference, ID, archive size and sha256."""
    rows = [
        (r["variant"], r["ref"], r["id"], human_bytes(r["archive"]["size"]), r["archive"]["sha256"][:16])
        for r in records
    ]
    return f"{verb}:\n" + table(rows, ("variant", "image", "id", "archive", "sha256"))


def main() -> None:
    """`python -m ci.image.archive save --variant cpu` | `python -m ci.image.archive load [--variant cpu]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("save", "load"))
    parser.add_argument("--variant", choices=build_image.VARIANTS, help="load: default every archive there")
    parser.add_argument("--dir", type=Path, default=None, help=f"default: ${ENV_VAR} or build/images")
    args = parser.parse_args()
    directory = args.dir or archive_dir()
    if args.command == "save":
        if not args.variant:
            parser.error("save needs --variant")
        records = [save(args.variant, directory)]
        print(summary(records, f"saved to {_display(directory)} (the image, its Bento and its record)"))
        return
    variants = [args.variant] if args.variant else variants_in(directory)
    if not variants:
        raise UserError(f"no image archive in {_display(directory)}: download a build job's image artifact there.")
    records = [load(variant, directory) for variant in variants]
    say(f"loaded {len(records)} image(s); each is the image ID its build recorded")
    print(summary(records, f"loaded from {_display(directory)}"))


if __name__ == "__main__":
    main_guard(main)
