"""Build an image variant twice from clean state and compare; explain any difference.

Each build runs in its own fresh clone of the last commit (so: another directory, empty .cache/ and
build/, the model dvc.lock records, pulled from the DVC remote by `ci.model.repro` as any clone gets it,
and trained there only when no remote has it; `nox -s cpu_parity` and the pipeline tests check
training itself), after the project's images and the BuildKit
cache were removed from the engine, minutes apart. Identical inputs must give the identical image
ID. When they do not, the layers that differ are named with the files in them that differ.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ci.engine import ensure_engine
from ci.project import (
    BUILD_DIR,
    ROOT,
    UserError,
    base_repository,
    build_repository,
    git,
    main_guard,
    say,
    section,
    step,
    table,
    uncommitted_paths,
)
from ci.records import load_image

WORKSPACE = BUILD_DIR / "reproduce"
MAX_FILES_SHOWN = 20
# What to do when cleaning the engine fails: the last sentence of the error.
RMI_FIX = (
    "Stop and remove the containers that use the project's images (`docker ps -a`), then run the reproduce check again."
)
PRUNE_FIX = "Wait for other builds on this engine to finish, then run the reproduce check again."
ENGINE_FIX = "Check that the engine answers (`docker info`), then run the reproduce check again."


@dataclass(frozen=True)
class Build:
    """What one clean build produced, kept outside its clone for comparison."""

    name: str
    record: dict
    config: dict
    listings: dict[str, list[dict]]  # normalized layer diff ID -> file entries


def remove_project_images(docker: str) -> None:
    """Remove every image of this project's repository (final, build and base) and the build cache, or fail.

    Each build must start from nothing: an image or cache entry left behind could make the second
    build a cache hit that passes by accident. So a failure of `docker rmi` or `docker builder prune`
    stops the check, and the images are listed again to prove none is left.
    """
    if refs := project_images(docker):
        _docker(docker, "rmi", "-f", *refs, shown=f"`docker rmi -f` on {len(refs)} images", fix=RMI_FIX)
    _docker(docker, "builder", "prune", "-af", fix=PRUNE_FIX)
    if left := project_images(docker):
        raise UserError(
            f"{len(left)} of the project's images are still in the engine after `docker rmi -f`: "
            f"{' '.join(left)}\nRemove them (`docker rmi -f <id>`), then run the reproduce check again."
        )


def project_images(docker: str) -> list[str]:
    """IDs of the images in the project's repositories (final, build and base), sorted."""
    repository = section("image")["repository"]
    refs = set()
    for pattern in (repository, build_repository(repository), base_repository(repository)):
        refs.update(_docker(docker, "image", "ls", "-q", "--no-trunc", pattern, fix=ENGINE_FIX).split())
    return sorted(refs)


def _docker(docker: str, *args: str, fix: str, shown: str = "") -> str:
    """Run a docker command for the clean state; its output, or a UserError with docker's message and `fix`."""
    proc = subprocess.run([docker, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        message = (proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}")[-800:]
        raise UserError(f"{shown or f'`docker {shlex.join(args)}`'} failed: {message}\n{fix}")
    return proc.stdout


def clean_build(docker: str, name: str, variant: str) -> Build:
    """Clone the last commit into WORKSPACE/name, get its model (ci.model.repro), build the variant, collect results."""
    clone = WORKSPACE / name
    if clone.exists():
        shutil.rmtree(clone)
    clone.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    remove_project_images(docker)
    # Same provenance label in both builds: the clones' origin is this checkout, not its remote.
    env = {**os.environ}
    env.setdefault("IMAGE_SOURCE", git("remote", "get-url", "origin", default="") or "local")
    env.pop("SOURCE_DATE_EPOCH", None)  # each clone derives it from the commit, as a user's build does
    # dvc runs the stages' `python -m pipeline...` from PATH: it must be this environment's Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for title, cmd in (
        (f"[{name}] dvc repro --pull", [sys.executable, "-m", "ci.model.repro"]),
        (f"[{name}] build {variant}", [sys.executable, "-m", "ci.image.build", "--variant", variant]),
    ):
        with step(title):
            proc = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"{title} failed in {clone}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    record = load_image(variant, build_dir=clone / "build")
    inspect = subprocess.run([docker, "image", "inspect", record["id"]], capture_output=True, text=True, check=True)
    listings = {}
    for diff_id, listing in zip(record["rootfs_layers"], record["listings"], strict=True):
        with gzip.open(clone / ".cache" / "layers" / listing, "rt") as fh:
            listings[diff_id] = json.load(fh)
    # Everything needed is in memory now; the clone holds a wheel pool of up to 3.6 GB (CUDA).
    shutil.rmtree(clone, ignore_errors=True)
    return Build(name, record, json.loads(inspect.stdout)[0], listings)


def explain(first: Build, second: Build) -> list[str]:
    """Human-readable differences between two builds: layers, then files, then config."""
    lines = []
    for key in ("bento", "bento_digest", "model_tag", "base"):
        if first.record.get(key) != second.record.get(key):
            lines.append(f"{key}: {first.record.get(key)} != {second.record.get(key)}")
    history = [layer["created_by"] for layer in first.record["layers"] if layer["size"]]
    pairs = zip(first.record["rootfs_layers"], second.record["rootfs_layers"], strict=False)
    for index, (a, b) in enumerate(pairs):
        if a == b:
            continue
        what = history[index][:80] if index < len(history) else f"layer {index}"
        lines.append(f"layer {index} differs ({what}): {a[:19]} != {b[:19]}")
        lines.extend(f"  {line}" for line in diff_listings(first.listings[a], second.listings[b]))
    if len(first.record["rootfs_layers"]) != len(second.record["rootfs_layers"]):
        lines.append("the builds have different numbers of layers")
    for key in ("Config", "Architecture", "Os"):
        if first.config.get(key) != second.config.get(key):
            lines.append(f"image config {key} differs")
    return lines


def diff_listings(a: list[dict], b: list[dict]) -> list[str]:
    """Files added, removed or changed between two layer listings (at most MAX_FILES_SHOWN)."""
    left, right = {e["path"]: e for e in a}, {e["path"]: e for e in b}
    out = []
    for path in sorted(left.keys() | right.keys()):
        if path not in right:
            out.append(f"only in the first build: {path}")
        elif path not in left:
            out.append(f"only in the second build: {path}")
        elif left[path] != right[path]:
            fields = sorted(
                k for k in left[path].keys() | right[path].keys() if left[path].get(k) != right[path].get(k)
            )
            out.append(f"changed ({', '.join(fields)}): {path}")
    if len(out) > MAX_FILES_SHOWN:
        out = [*out[:MAX_FILES_SHOWN], f"... and {len(out) - MAX_FILES_SHOWN} more"]
    return out


def reproduce(variant: str) -> tuple[Build, Build, list[str]]:
    """Two clean builds of `variant`; returns both and the list of differences (empty: identical)."""
    docker = ensure_engine()
    if uncommitted := uncommitted_paths():
        say(f"uncommitted changes are not part of this check ({len(uncommitted)} files): it builds the last commit")
    first = clean_build(docker, "first", variant)
    second = clean_build(docker, "second", variant)
    return first, second, explain(first, second) if first.record["id"] != second.record["id"] else []


def main() -> None:
    """`python -m ci.image.reproduce --variant cpu`: build twice from clean state and compare."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="cpu")
    args = parser.parse_args()
    first, second, differences = reproduce(args.variant)
    print(
        table(
            [(b.name, b.record["id"], b.record["bento_digest"][:16]) for b in (first, second)],
            ("build", "image ID", "bento digest"),
        )
    )
    if differences:
        print("\n".join(["", "the two builds differ:", *differences]))
        raise UserError(f"the {args.variant} image is not reproducible: see the differences above.")
    print(f"\nreproducible: both clean builds of {args.variant} gave {first.record['id']}")


if __name__ == "__main__":
    main_guard(main)
