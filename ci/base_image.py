"""Build the base image from Debian packages with mmdebstrap: no registry, no pull.

The rootfs tarball is cached under .cache/base/, keyed by the `image.base` section of params.yaml,
and imported into the engine as `<repository>-base:<sha of the tarball>`, so the same tarball is
always the same tag and a cached base keeps every image layer above it cached too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from ci.engine import apt_install, ensure_engine
from ci.project import CACHE_DIR, UserError, main_guard, run, say, section, sha256_file, step

BASE_CACHE = CACHE_DIR / "base"
# Documentation is dead weight in a runtime image; copyright files stay (licence compliance, SBOM).
DPKG_OPTS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)


def base_config() -> dict:
    """The `image.base` section, checked."""
    base = section("image").get("base") or {}
    for key in ("suite", "packages", "mirrors", "snapshot_epoch"):
        if key not in base:
            raise UserError(f"params.yaml `image.base.{key}` is missing: restore it from the template.")
    return base


def cache_key(base: dict) -> str:
    """What decides the rootfs: every setting plus the dpkg filters."""
    blob = json.dumps({"base": base, "dpkg": DPKG_OPTS}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def mmdebstrap_command(base: dict, output: Path) -> list[str]:
    """The mmdebstrap invocation for a minimal rootfs with the configured packages."""
    cmd = ["mmdebstrap", "--variant=minbase", f"--include={','.join(base['packages'])}"]
    cmd += [f"--dpkgopt={opt}" for opt in DPKG_OPTS]
    cmd += ['--aptopt=Acquire::Retries "3"', base["suite"], str(output)]
    cmd += [f"deb {mirror}" for mirror in base["mirrors"]]
    return cmd


def build_rootfs(refresh: bool = False) -> Path:
    """Return the cached rootfs tarball, building it first when missing (or when refresh is asked)."""
    base = base_config()
    tarball = BASE_CACHE / f"rootfs-{base['suite']}-{cache_key(base)}.tar"
    if tarball.exists() and not refresh:
        say(f"base rootfs cached: {tarball.relative_to(CACHE_DIR.parent)}")
        return tarball
    if not shutil.which("mmdebstrap"):
        apt_install("mmdebstrap")
    BASE_CACHE.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    with step(f"building the {base['suite']} rootfs with mmdebstrap ({', '.join(base['packages'])})"):
        run(mmdebstrap_command(base, partial), env={"SOURCE_DATE_EPOCH": str(base["snapshot_epoch"])})
    partial.replace(tarball)  # only a finished tarball ever has the final name
    return tarball


def ensure_base_image(repository: str, refresh: bool = False) -> str:
    """Make sure the base image is in the engine; return its reference."""
    docker = ensure_engine()
    tarball = build_rootfs(refresh)
    ref = f"{repository}-base:{sha256_file(tarball)[:16]}"
    if subprocess.run([docker, "image", "inspect", ref], capture_output=True).returncode != 0:
        with step(f"importing {tarball.name} as {ref}"):
            run([docker, "import", str(tarball), ref], capture_output=True)
    else:
        say(f"base image present: {ref}")
    return ref


def main() -> None:
    """`python -m ci.base_image [--refresh]`: build and import the base; print its reference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refresh", action="store_true", help="rebuild the rootfs even if cached")
    args = parser.parse_args()
    print(ensure_base_image(section("image")["repository"], refresh=args.refresh))


if __name__ == "__main__":
    main_guard(main)
