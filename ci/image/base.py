"""Build the base image from exactly the Debian packages of base-packages.lock: no registry, no pull.

`params.yaml` → `image.base` says what the base is made of (suite, packages, mirrors, the snapshot
epoch); `base-packages.lock` records what that resolved to: every package's version and the sha256
of the rootfs tarball mmdebstrap made from them. Like `uv sync` and `uv sync --locked`:

- A build installs the locked versions, never "newest". Sources are tried in order: Debian's
  snapshot archive at the lock's epoch (immutable; reachable from GitHub's runners), then the
  configured mirrors with every locked version pinned (apt preferences). The first source whose
  rootfs holds exactly the locked packages serves the build, and the build says which one it was.
- A cached tarball is used only when its sha256 equals the lock's.
- When no source serves the locked versions (a version that lived only in the security suite is gone
  once superseded), or the lock is stale (`image.base` changed): a locked build (`CI` set,
  `BASE_LOCKED=1`, `--locked`; `reproduce` runs locked) fails with one sentence naming the packages
  and the command that refreshes the lock; a build at a terminal (the main job) refreshes the lock
  itself and says so, package by package, so that the person commits it.

`python -m ci.image.base --update-lock` (`nox -s base_lock`, run weekly by a workflow that opens a
pull request) resolves the newest versions from the mirrors and rewrites the lock and the epoch.
The tarball is imported into the engine as `<repository>-base:<sha of the tarball>`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ci.engine import apt_install, ensure_engine
from ci.image.oci import rfc3339
from ci.project import (
    CACHE_DIR,
    PARAMS_FILE,
    ROOT,
    UserError,
    base_ref,
    locked_mode,
    main_guard,
    run,
    say,
    section,
    sha256_file,
    step,
)

BASE_CACHE = CACHE_DIR / "base"
PACKAGE_LOCK = ROOT / "base-packages.lock"  # the Debian package set of the base, committed
REFRESH_COMMAND = "bash ci/nox.sh -s base_lock"
# Documentation is dead weight in a runtime image; copyright files stay (licence compliance, SBOM).
DPKG_OPTS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
# Written into the rootfs by a setup hook and removed again by a customize hook: the pins decide
# what is installed but are not part of the image.
PREFERENCES_IN_ROOTFS = "/etc/apt/preferences.d/base-packages-lock.pref"
# mmdebstrap stores --aptopt values here; they describe how this build fetched, not the image.
APTOPT_FILE_IN_ROOTFS = "/etc/apt/apt.conf.d/99mmdebstrap"
PROBE_TIMEOUT_S = 10


def base_config() -> dict:
    """The `image.base` section, checked."""
    base = section("image").get("base") or {}
    for key in ("suite", "packages", "mirrors", "snapshot_epoch", "snapshot_url"):
        if key not in base:
            raise UserError(f"params.yaml `image.base.{key}` is missing: restore it from the template.")
    return base


def inputs_key(base: dict) -> str:
    """What the lock was resolved from: every `image.base` setting plus the dpkg filters."""
    blob = json.dumps({"base": base, "dpkg": DPKG_OPTS}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class BaseLock:
    """base-packages.lock: the inputs it was resolved from, the packages, the rootfs they make."""

    inputs: str
    snapshot_epoch: int
    rootfs_sha256: str
    mmdebstrap: str
    packages: dict[str, str]


@dataclass(frozen=True)
class Source:
    """Where a build fetches its packages from."""

    name: str
    mirrors: list[str]
    aptopts: list[str] = field(default_factory=list)
    probe_url: str = ""


@dataclass
class BaseResult:
    """What `ensure_rootfs` did: the tarball, the source that served it, and any lock refresh."""

    tarball: Path
    source: str
    lock_changes: list[str] = field(default_factory=list)


def mmdebstrap_version() -> str:
    """mmdebstrap's version ("1.3.5"), which is part of what decides the tarball's bytes."""
    out = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True).stdout
    return out.split()[-1] if out.strip() else "unknown"


def snapshot_stamp(epoch: int) -> str:
    """The snapshot archive's timestamp for an epoch: 20261123T000000Z."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%dT%H%M%SZ")


def snapshot_mirrors(base: dict, epoch: int) -> list[str]:
    """The configured mirrors rewritten to the snapshot archive at `epoch`.

    `http://deb.debian.org/debian-security bookworm-security main` becomes
    `<snapshot_url>/debian-security/<stamp>/ bookworm-security main`: the archive's name is the
    mirror URL's last path component.
    """
    out = []
    for line in base["mirrors"]:
        url, _, rest = line.partition(" ")
        archive = url.rstrip("/").rsplit("/", 1)[-1]
        out.append(f"{base['snapshot_url'].rstrip('/')}/{archive}/{snapshot_stamp(epoch)}/ {rest}")
    return out


def sources(base: dict, epoch: int) -> list[Source]:
    """The sources a locked build tries, in order."""
    snapshot = snapshot_mirrors(base, epoch)
    first_url, _, rest = snapshot[0].partition(" ")
    return [
        Source(
            name=f"snapshot archive at {snapshot_stamp(epoch)}",
            mirrors=snapshot,
            # A snapshot's Release file is past its Valid-Until date by design.
            aptopts=['Acquire::Check-Valid-Until "false"'],
            probe_url=f"{first_url.rstrip('/')}/dists/{rest.split()[0]}/Release",
        ),
        Source(name="configured mirrors, locked versions pinned", mirrors=list(base["mirrors"])),
    ]


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> str:
    """'' when `url` answers, else why not (one short phrase)."""
    if not url:
        return ""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return ""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


def apt_preferences(packages: dict[str, str]) -> str:
    """apt preferences that make every locked version the only candidate (priority > 1000 may downgrade)."""
    stanzas = []
    for name_arch, version in sorted(packages.items()):
        name, _, arch = name_arch.partition(":")
        # Architecture-qualified names select exactly the locked package ("all" packages need none).
        package = name if arch in ("all", "") else f"{name}:{arch}"
        stanzas.append(f"Package: {package}\nPin: version {version}\nPin-Priority: 1001\n")
    return "\n".join(stanzas)


def sources_list(mirrors: list[str]) -> str:
    """/etc/apt/sources.list of the image: the configured mirrors, whichever source served the build."""
    return "".join(f"deb {mirror}\n" for mirror in mirrors)


def mmdebstrap_command(
    base: dict, output: Path, source: Source, *, preferences: Path | None, sources_file: Path
) -> list[str]:
    """The mmdebstrap invocation for a minimal rootfs with the configured packages."""
    cmd = ["mmdebstrap", "--variant=minbase", f"--include={','.join(base['packages'])}"]
    cmd += [f"--dpkgopt={opt}" for opt in DPKG_OPTS]
    cmd += ['--aptopt=Acquire::Retries "3"', *(f"--aptopt={opt}" for opt in source.aptopts)]
    if preferences:
        cmd.append(f"--setup-hook=upload {preferences} {PREFERENCES_IN_ROOTFS}")
        cmd.append(f"--customize-hook=rm -f $1{PREFERENCES_IN_ROOTFS}")
    # The same bytes whichever source served: the image's apt points at the configured mirrors, and
    # no fetch option of this build stays behind.
    cmd.append(f"--customize-hook=upload {sources_file} /etc/apt/sources.list")
    cmd.append(f"--customize-hook=rm -f $1{APTOPT_FILE_IN_ROOTFS}")
    cmd += [base["suite"], str(output)]
    cmd += [f"deb {mirror}" for mirror in source.mirrors]
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


def render_lock(lock: BaseLock, base: dict) -> str:
    """The text of base-packages.lock."""
    header = (
        "# The base image's Debian packages, resolved from params.yaml image.base by ci/image/base.py.\n"
        f"# suite {base['suite']}, packages {', '.join(base['packages'])}.\n"
        "# Builds install exactly these versions (snapshot archive at snapshot_epoch, else the mirrors\n"
        "# with these versions pinned) and check the rootfs against rootfs_sha256. To move to Debian's\n"
        f"# newest versions (security updates): `{REFRESH_COMMAND}`, review the diff, commit.\n"
    )
    meta = (
        "[base]\n"
        f"inputs = {lock.inputs}\n"
        f"snapshot_epoch = {lock.snapshot_epoch}\n"
        f"mmdebstrap = {lock.mmdebstrap}\n"
        f"rootfs_sha256 = {lock.rootfs_sha256}\n"
        "\n[packages]\n"
    )
    return header + meta + "".join(f"{name} = {version}\n" for name, version in sorted(lock.packages.items()))


def parse_lock(text: str) -> BaseLock:
    """base-packages.lock's text as a BaseLock; UserError when it is not in this format."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif current is not None and " = " in line:
            key, _, value = line.partition(" = ")
            current[key] = value
        else:
            raise UserError(f"{PACKAGE_LOCK.name}: unreadable line {line!r}: run `{REFRESH_COMMAND}` to rewrite it.")
    meta = sections.get("base", {})
    missing = [key for key in ("inputs", "snapshot_epoch", "rootfs_sha256", "mmdebstrap") if key not in meta]
    if missing or "packages" not in sections:
        raise UserError(
            f"{PACKAGE_LOCK.name} lacks {', '.join(missing) or '[packages]'} (an older format?): "
            f"run `{REFRESH_COMMAND}` to rewrite it."
        )
    return BaseLock(
        inputs=meta["inputs"],
        snapshot_epoch=int(meta["snapshot_epoch"]),
        rootfs_sha256=meta["rootfs_sha256"],
        mmdebstrap=meta["mmdebstrap"],
        packages=dict(sorted(sections["packages"].items())),
    )


def read_lock(path: Path | None = None) -> BaseLock:
    """base-packages.lock, parsed."""
    path = path or PACKAGE_LOCK
    if not path.is_file():
        raise UserError(f"{path.name} is missing: run `{REFRESH_COMMAND}` and commit it.")
    return parse_lock(path.read_text())


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


def shorten(lines: list[str], limit: int = 30) -> str:
    """Lines joined for an error message, at most `limit` of them."""
    shown = "\n  ".join(lines[:limit])
    return shown + (f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else "")


def run_mmdebstrap(base: dict, source: Source, epoch: int, packages: dict[str, str] | None, output: Path) -> None:
    """Build a rootfs tarball at `output` from `source`; with `packages`, only those versions are candidates."""
    if not shutil.which("mmdebstrap"):
        apt_install("mmdebstrap")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="base-") as tmp:
        preferences = None
        if packages:
            preferences = Path(tmp, "lock.pref")
            preferences.write_text(apt_preferences(packages))
        sources_file = Path(tmp, "sources.list")
        sources_file.write_text(sources_list(base["mirrors"]))
        cmd = mmdebstrap_command(base, output, source, preferences=preferences, sources_file=sources_file)
        # SOURCE_DATE_EPOCH stamps every file time in the rootfs: the same packages give the same bytes.
        run(cmd, env={"SOURCE_DATE_EPOCH": str(epoch)})


def build_locked(base: dict, lock: BaseLock, target: Path) -> tuple[str, list[str]]:
    """Build the locked rootfs into `target` from the first source that serves it.

    Returns (the source's name, []) or ("", the packages no source served as locked).
    """
    unserved: list[str] = []
    for source in sources(base, lock.snapshot_epoch):
        if why := reachable(source.probe_url):
            say(f"base source skipped: {source.name} is not reachable ({why})")
            continue
        partial = target.with_suffix(".partial.tar")
        with step(f"building the {base['suite']} rootfs from {source.name}"):
            try:
                run_mmdebstrap(base, source, lock.snapshot_epoch, lock.packages, partial)
            except UserError as exc:
                say(f"base source failed: {source.name}: {exc}")
                continue
        drift = package_drift(lock.packages, installed_packages(partial))
        if drift:
            say(f"{source.name} does not serve {len(drift)} locked packages:\n  {shorten(drift)}")
            unserved = drift
            partial.unlink()
            continue
        partial.replace(target)  # only a finished, checked tarball ever has the final name
        return source.name, []
    return "", unserved


def refresh_lock(base: dict, *, epoch: int | None = None, old: BaseLock | None = None) -> tuple[BaseLock, Path]:
    """Resolve the newest versions from the configured mirrors; write the lock; return it and its tarball.

    The new lock's epoch is `epoch` (default: now), so the snapshot archive serves the same versions
    later. When the packages did not change, the old lock is kept as it is.
    """
    epoch = int(epoch if epoch is not None else time.time())
    partial = BASE_CACHE / "rootfs-refresh.partial.tar"
    mirrors = Source(name="configured mirrors, newest versions", mirrors=list(base["mirrors"]))
    with step(f"resolving the newest {base['suite']} packages from the mirrors (mmdebstrap)"):
        run_mmdebstrap(base, mirrors, epoch, None, partial)
    packages = installed_packages(partial)
    if old and old.packages == packages and old.inputs == inputs_key(base):
        partial.unlink()
        say(f"{PACKAGE_LOCK.name} is up to date: Debian serves the same {len(packages)} package versions")
        return old, None
    set_snapshot_epoch(epoch)
    base = {**base, "snapshot_epoch": epoch}
    lock = BaseLock(inputs_key(base), epoch, sha256_file(partial), mmdebstrap_version(), packages)
    tarball = cached_tarball(lock)
    partial.replace(tarball)
    PACKAGE_LOCK.write_text(render_lock(lock, base))
    return lock, tarball


def set_snapshot_epoch(epoch: int, params_file: Path = PARAMS_FILE) -> None:
    """Rewrite `snapshot_epoch:` in params.yaml in place (its comment says the date), keeping the rest."""
    text = params_file.read_text()
    stamp = rfc3339(epoch)
    new, count = re.subn(
        r"^(\s*snapshot_epoch:\s*)\d+(\s*#[^\n]*)?$", rf"\g<1>{epoch}      # {stamp}", text, count=1, flags=re.M
    )
    if count != 1:
        raise UserError(f"{params_file.name} has no `snapshot_epoch:` line under image.base: restore it.")
    params_file.write_text(new)


def cached_tarball(lock: BaseLock) -> Path:
    """Where the tarball of `lock` is cached: named by its sha256, so a name is a claim to check."""
    return BASE_CACHE / f"rootfs-{lock.rootfs_sha256[:16]}.tar"


def ensure_rootfs(*, locked: bool) -> BaseResult:
    """The rootfs tarball of base-packages.lock, verified; built from a locked source when not cached.

    `locked`: fail rather than refresh the lock. Not locked: refresh it (and report each change).
    """
    base = base_config()
    try:
        lock = read_lock()
        problem = "" if lock.inputs == inputs_key(base) else "params.yaml image.base changed since it was written"
        if lock.snapshot_epoch != int(base["snapshot_epoch"]):
            problem = "its snapshot_epoch differs from params.yaml image.base.snapshot_epoch"
    except UserError as exc:
        lock, problem = None, str(exc)
    if lock and not problem:
        tarball = cached_tarball(lock)
        if tarball.is_file():
            actual = sha256_file(tarball)
            if actual == lock.rootfs_sha256:
                say(f"base rootfs cached and verified: {tarball.relative_to(ROOT)} (sha256 {actual[:16]})")
                return BaseResult(tarball, "cache (verified against the lock)")
            say(f"cached {tarball.name} has sha256 {actual[:16]}, the lock says {lock.rootfs_sha256[:16]}: rebuilding")
            tarball.unlink()
        source, unserved = build_locked(base, lock, tarball)
        if source:
            actual = sha256_file(tarball)
            if actual == lock.rootfs_sha256:
                say(f"base rootfs built from {source}: exactly the locked packages, sha256 {actual[:16]} as locked")
                return BaseResult(tarball, source)
            problem = (
                f"the locked packages gave a rootfs with sha256 {actual[:16]}, the lock records "
                f"{lock.rootfs_sha256[:16]} (mmdebstrap {mmdebstrap_version()} here, {lock.mmdebstrap} in the lock)"
            )
            if not locked:
                # Same packages, other bytes (another mmdebstrap): record these bytes, say so.
                new = BaseLock(lock.inputs, lock.snapshot_epoch, actual, mmdebstrap_version(), lock.packages)
                fixed = cached_tarball(new)
                tarball.replace(fixed)
                PACKAGE_LOCK.write_text(render_lock(new, base))
                say(f"{PACKAGE_LOCK.name}: {problem}: recorded the new sha256")
                return BaseResult(fixed, source, [f"rootfs_sha256 {lock.rootfs_sha256[:16]} -> {actual[:16]}"])
            tarball.unlink()
        else:
            problem = (
                f"no source serves {len(unserved)} locked packages:\n  {shorten(unserved)}"
                if unserved
                else "no package source could be reached or built from (see the lines above)"
            )
    if locked:
        raise UserError(
            f"{PACKAGE_LOCK.name}: {problem}\nThis build runs locked (CI, reproduce, BASE_LOCKED=1): "
            f"refresh the lock with `{REFRESH_COMMAND}`, review the diff and commit it."
        )
    say(f"{PACKAGE_LOCK.name}: {problem}: refreshing it from Debian's newest packages")
    new, tarball = refresh_lock(base, old=lock)
    changes = package_drift(lock.packages, new.packages) if lock else [f"wrote {len(new.packages)} packages"]
    return BaseResult(tarball or cached_tarball(new), "configured mirrors, newest versions (lock refreshed)", changes)


def ensure_base_image(repository: str, *, locked: bool = False) -> tuple[str, BaseResult]:
    """Make sure the locked base image is in the engine; return its reference and how it was obtained."""
    docker = ensure_engine()
    result = ensure_rootfs(locked=locked_mode(locked))
    ref = base_ref(repository, sha256_file(result.tarball))
    if subprocess.run([docker, "image", "inspect", ref], capture_output=True).returncode != 0:
        with step(f"importing {result.tarball.name} as {ref}"):
            run([docker, "import", str(result.tarball), ref], capture_output=True)
    else:
        say(f"base image present: {ref}")
    return ref, result


def main() -> None:
    """`python -m ci.image.base [--update-lock] [--locked]`: build (or refresh) and import the base."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--update-lock", action="store_true", help=f"resolve the newest packages into {PACKAGE_LOCK.name}"
    )
    parser.add_argument("--locked", action="store_true", help="fail instead of refreshing the lock (CI sets this)")
    args = parser.parse_args()
    if args.update_lock:
        old = None
        with contextlib.suppress(UserError):  # a missing or old-format lock is simply replaced
            old = read_lock()
        new, _ = refresh_lock(base_config(), old=old)
        if old is not None and new is not old:
            changes = package_drift(old.packages, new.packages)
            say(f"{PACKAGE_LOCK.name} refreshed ({len(changes)} changes):\n  {shorten(changes, 200)}")
            say("review the diff of base-packages.lock and params.yaml, then commit both")
        return
    ref, result = ensure_base_image(section("image")["repository"], locked=args.locked)
    if result.lock_changes:
        say(f"{PACKAGE_LOCK.name} refreshed; commit it:\n  {shorten(result.lock_changes, 200)}")
    print(ref)


if __name__ == "__main__":
    main_guard(main)
