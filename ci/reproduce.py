"""Build an image variant twice from clean state and compare; explain any difference.

Each build runs in its own fresh clone of the last commit (so: another directory, empty .cache/ and
build/, a model trained by `dvc repro` in that clone), after the project's images and the BuildKit
cache were removed from the engine, minutes apart. Identical inputs must give the identical image
ID. When they do not, the layers that differ are named with the files in them that differ.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ci.engine import ensure_engine
from ci.project import BUILD_DIR, ROOT, UserError, git, main_guard, say, section, step, table

WORKSPACE = BUILD_DIR / "reproduce"
MAX_FILES_SHOWN = 20


@dataclass(frozen=True)
class Build:
    """What one clean build produced, kept outside its clone for comparison."""

    name: str
    record: dict
    config: dict
    listings: dict[str, list[dict]]  # normalized layer diff ID -> file entries


def remove_project_images(docker: str) -> None:
    """Remove every image of this project's repository (final, build and base) and the build cache."""
    repository = section("image")["repository"]
    refs = set()
    for pattern in (repository, f"{repository}-build", f"{repository}-base"):
        out = subprocess.run([docker, "image", "ls", "-q", "--no-trunc", pattern], capture_output=True, text=True)
        refs.update(out.stdout.split())
    if refs:
        subprocess.run([docker, "rmi", "-f", *sorted(refs)], capture_output=True)
    subprocess.run([docker, "builder", "prune", "-af"], capture_output=True)


def clean_build(docker: str, name: str, variant: str) -> Build:
    """Clone the last commit into WORKSPACE/name, train there, build the variant, collect the results."""
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
        (f"[{name}] dvc repro", [sys.executable, "-m", "dvc", "repro", "--quiet"]),
        (f"[{name}] build {variant}", [sys.executable, "-m", "ci.build_image", "--variant", variant]),
    ):
        with step(title):
            proc = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"{title} failed in {clone}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    record = json.loads((clone / "build" / f"image-{variant}.json").read_text())
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
    if git("status", "--porcelain", "--untracked-files=no"):
        say("uncommitted changes are not part of this check: it builds the last commit")
    first = clean_build(docker, "first", variant)
    second = clean_build(docker, "second", variant)
    return first, second, explain(first, second) if first.record["id"] != second.record["id"] else []


def main() -> None:
    """`python -m ci.reproduce --variant cpu`: build twice from clean state and compare."""
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
