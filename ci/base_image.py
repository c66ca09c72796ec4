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
import tarfile
from pathlib import Path

from ci.engine import apt_install, ensure_engine
from ci.project import CACHE_DIR, ROOT, UserError, main_guard, run, say, section, sha256_file, step

BASE_CACHE = CACHE_DIR / "base"
PACKAGE_LOCK = ROOT / "base-packages.lock"  # the Debian package set of the base, committed
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


def installed_packages(tarball: Path) -> dict[str, str]:
    """`name:arch` -> version of every package dpkg installed in the rootfs tarball."""
    with tarfile.open(tarball) as tar:
        member = next((m for m in tar if m.name.lstrip("./") == "var/lib/dpkg/status"), None)
        if member is None:
            raise UserError(f"{tarball.name} has no dpkg status file: delete it and build again.")
        status = tar.extractfile(member).read().decode()
    return parse_dpkg_status(status)


def parse_dpkg_status(status: str) -> dict[str, str]:
    """Installed packages of a dpkg status file: `name:arch` -> version."""
    packages = {}
    for stanza in status.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        if fields.get("Status", "").endswith(" installed"):
            packages[f"{fields['Package']}:{fields.get('Architecture', 'all')}"] = fields["Version"]
    return dict(sorted(packages.items()))


def render_lock(packages: dict[str, str], base: dict) -> str:
    """The text of base-packages.lock."""
    header = (
        "# Debian packages of the base image, as mmdebstrap installed them (ci/base_image.py).\n"
        f"# suite {base['suite']}, packages {', '.join(base['packages'])}, snapshot_epoch {base['snapshot_epoch']}.\n"
        "# A build whose packages differ fails and names them. To accept a new package set (security\n"
        "# updates): `python -m ci.base_image --refresh --update-lock`, review the diff, commit.\n"
    )
    return header + "".join(f"{name}={version}\n" for name, version in packages.items())


def read_lock(path: Path | None = None) -> dict[str, str]:
    """base-packages.lock as `name:arch` -> version."""
    path = path or PACKAGE_LOCK
    if not path.is_file():
        raise UserError(f"{path.name} is missing: run `python -m ci.base_image --refresh --update-lock` and commit it.")
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def package_drift(locked: dict[str, str], actual: dict[str, str]) -> list[str]:
    """One line per package that differs between the lock and the rootfs."""
    lines = []
    for name in sorted(locked.keys() | actual.keys()):
        if name not in actual:
            lines.append(f"removed {name} (locked {locked[name]})")
        elif name not in locked:
            lines.append(f"added {name}={actual[name]}")
        elif locked[name] != actual[name]:
            lines.append(f"changed {name}: locked {locked[name]}, now {actual[name]}")
    return lines


def check_packages(tarball: Path) -> None:
    """Fail, naming the packages, when the rootfs does not hold exactly the locked package set."""
    drift = package_drift(read_lock(), installed_packages(tarball))
    if drift:
        shown = "\n  ".join(drift[:30]) + (f"\n  ... and {len(drift) - 30} more" if len(drift) > 30 else "")
        raise UserError(
            f"the base rootfs drifted from {PACKAGE_LOCK.name} ({len(drift)} packages):\n  {shown}\n"
            "Debian's archive moved on (or params.yaml image.base changed). To accept the new set: "
            "`python -m ci.base_image --refresh --update-lock`, review the diff, commit."
        )


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
    """Make sure the base image is in the engine, with exactly the locked packages; return its reference."""
    docker = ensure_engine()
    tarball = build_rootfs(refresh)
    check_packages(tarball)
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
    parser.add_argument("--update-lock", action="store_true", help=f"write {PACKAGE_LOCK.name} from the rootfs")
    args = parser.parse_args()
    if args.update_lock:
        tarball = build_rootfs(args.refresh)
        PACKAGE_LOCK.write_text(render_lock(installed_packages(tarball), base_config()))
        say(f"wrote {PACKAGE_LOCK.name}: {len(read_lock())} packages")
    print(ensure_base_image(section("image")["repository"], refresh=args.refresh))


if __name__ == "__main__":
    main_guard(main)
