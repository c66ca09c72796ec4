"""The base image follows base-packages.lock: parsing, rendering, sources, pins, locked and refreshing builds."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from ci.image import base as base_image
from ci.project import UserError

STATUS = """Package: python3
Status: install ok installed
Architecture: amd64
Version: 3.11.2-1+b1
Description: interactive high-level object-oriented language
 continuation line: with a colon

Package: adduser
Status: install ok installed
Architecture: all
Version: 3.134

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""
BASE = {
    "suite": "bookworm",
    "packages": ["python3"],
    "snapshot_epoch": 1795392000,
    "snapshot_url": "http://snapshot.debian.org/archive",
    "mirrors": [
        "http://deb.debian.org/debian bookworm main",
        "http://deb.debian.org/debian-security bookworm-security main",
    ],
}
PACKAGES = {"adduser:all": "3.134", "python3:amd64": "3.11.2-1+b1"}


def make_rootfs(path, status: str) -> None:
    """A rootfs tarball holding just a dpkg status file, laid out as mmdebstrap writes it."""
    with tarfile.open(path, "w") as tar:
        data = status.encode()
        info = tarfile.TarInfo("./var/lib/dpkg/status")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def test_parse_keeps_installed_packages_only():
    """Packages with config files only are not installed; continuation lines are ignored."""
    assert base_image.parse_dpkg_status(STATUS) == {"adduser:all": "3.134", "python3:amd64": "3.11.2-1+b1"}


def make_lock(packages=None, sha="a" * 64, base=BASE) -> base_image.BaseLock:
    """A lock resolved from `base` with the given packages and rootfs sha256."""
    return base_image.BaseLock(
        base_image.inputs_key(base), base["snapshot_epoch"], sha, "1.3.5", dict(packages or PACKAGES)
    )


@pytest.fixture(name="project")
def fixture_project(tmp_path, monkeypatch):
    """base_image pointed at a temporary lock and cache, with BASE as params.yaml's image.base."""
    monkeypatch.setattr(base_image, "PACKAGE_LOCK", tmp_path / "base-packages.lock")
    monkeypatch.setattr(base_image, "BASE_CACHE", tmp_path / "cache")
    monkeypatch.setattr(base_image, "ROOT", tmp_path)
    monkeypatch.setattr(base_image, "base_config", lambda: dict(BASE))
    (tmp_path / "cache").mkdir()
    return tmp_path


def test_lock_round_trips():
    """render_lock writes what parse_lock reads back: inputs, epoch, mmdebstrap, rootfs sha256, packages."""
    lock = make_lock()
    assert base_image.parse_lock(base_image.render_lock(lock, BASE)) == lock


def test_drift_names_added_removed_and_changed():
    """Every kind of difference is named with both versions."""
    drift = base_image.package_drift({"a:all": "1", "b:all": "1"}, {"b:all": "2", "c:all": "1"})
    assert drift == ["removed a:all (locked 1)", "changed b:all: locked 1, now 2", "added c:all=1"]


def test_an_old_format_lock_says_how_to_rewrite_it():
    """A lock of name=version lines only (no [base] section) is refused with the refresh command."""
    with pytest.raises(UserError, match=r"ci/nox\.sh -s base_lock"):
        base_image.parse_lock("adduser:all=3.134\npython3:amd64=3.11.2-1\n")


def test_missing_lock_says_how_to_make_one(tmp_path):
    """Without a lock the build stops and names the command that writes it."""
    with pytest.raises(UserError, match=r"ci/nox\.sh -s base_lock"):
        base_image.read_lock(tmp_path / "nope.lock")


def test_repository_lock_matches_params():
    """The committed lock was resolved from params.yaml's image.base as it is now, and holds its packages."""
    lock = base_image.read_lock()
    base = base_image.base_config()
    assert lock.inputs == base_image.inputs_key(base)
    assert lock.snapshot_epoch == base["snapshot_epoch"]
    assert len(lock.rootfs_sha256) == 64
    for package in base["packages"]:
        assert any(name.split(":")[0] == package for name in lock.packages), package


def test_preferences_pin_every_locked_version():
    """Each locked package gets a priority-1001 pin on its exact version; arch-specific ones by name:arch."""
    prefs = base_image.apt_preferences(PACKAGES)
    assert "Package: adduser\nPin: version 3.134\nPin-Priority: 1001\n" in prefs
    assert "Package: python3:amd64\nPin: version 3.11.2-1+b1\nPin-Priority: 1001\n" in prefs


def test_snapshot_comes_first_at_the_lock_epoch():
    """The snapshot archive at the epoch is tried before the pinned mirrors, with each archive mapped by name."""
    first, second = base_image.sources(BASE, 1795392000)
    assert first.mirrors == [
        "http://snapshot.debian.org/archive/debian/20261123T000000Z/ bookworm main",
        "http://snapshot.debian.org/archive/debian-security/20261123T000000Z/ bookworm-security main",
    ]
    assert first.probe_url == "http://snapshot.debian.org/archive/debian/20261123T000000Z/dists/bookworm/Release"
    assert 'Acquire::Check-Valid-Until "false"' in first.aptopts
    assert second.mirrors == BASE["mirrors"]


def test_mmdebstrap_leaves_no_trace_of_the_source(tmp_path):
    """The pins go in before apt runs and come out after; sources.list and apt options are made canonical."""
    source = base_image.sources(BASE, 1)[0]
    cmd = base_image.mmdebstrap_command(
        BASE, tmp_path / "out.tar", source, preferences=tmp_path / "p", sources_file=tmp_path / "s"
    )
    assert f"--setup-hook=upload {tmp_path / 'p'} {base_image.PREFERENCES_IN_ROOTFS}" in cmd
    assert f"--customize-hook=rm -f $1{base_image.PREFERENCES_IN_ROOTFS}" in cmd
    assert f"--customize-hook=upload {tmp_path / 's'} /etc/apt/sources.list" in cmd
    assert f"--customize-hook=rm -f $1{base_image.APTOPT_FILE_IN_ROOTFS}" in cmd
    assert cmd[-2:] == [f"deb {line}" for line in source.mirrors]
    assert base_image.sources_list(BASE["mirrors"]).splitlines() == [f"deb {line}" for line in BASE["mirrors"]]


def test_unreachable_source_is_named(monkeypatch):
    """A probe that cannot connect returns why, and an empty URL needs no probe."""
    assert base_image.reachable("") == ""
    assert base_image.reachable("http://127.0.0.1:9/nothing", timeout=2)


def test_locked_build_fails_naming_unserved_packages(project, monkeypatch):
    """Locked, when no source serves the locked versions: one error naming them and the refresh command."""
    base_image.PACKAGE_LOCK.write_text(base_image.render_lock(make_lock(), BASE))
    monkeypatch.setattr(base_image, "build_locked", lambda *a: ("", ["changed libpam0g:amd64: locked 1, now 2"]))
    with pytest.raises(UserError) as info:
        base_image.ensure_rootfs(locked=True)
    message = str(info.value)
    assert "libpam0g:amd64" in message
    assert "ci/nox.sh -s base_lock" in message


def test_unlocked_build_refreshes_and_reports_changes(project, monkeypatch):
    """Not locked (a person at a terminal): the lock is refreshed and each changed package reported."""
    base_image.PACKAGE_LOCK.write_text(base_image.render_lock(make_lock(), BASE))
    monkeypatch.setattr(base_image, "build_locked", lambda *a: ("", ["changed python3:amd64"]))
    newer = make_lock({**PACKAGES, "python3:amd64": "3.11.2-1+b2"}, sha="b" * 64)
    tarball = project / "cache" / "new.tar"
    monkeypatch.setattr(base_image, "refresh_lock", lambda base, old: (newer, tarball))
    result = base_image.ensure_rootfs(locked=False)
    assert result.tarball == tarball
    assert result.lock_changes == ["changed python3:amd64: locked 3.11.2-1+b1, now 3.11.2-1+b2"]


def test_stale_lock_fails_when_locked(project):
    """A lock resolved from other image.base settings is stale: a locked build refuses it."""
    base_image.PACKAGE_LOCK.write_text(base_image.render_lock(make_lock(base={**BASE, "packages": ["curl"]}), BASE))
    with pytest.raises(UserError, match=r"image\.base changed"):
        base_image.ensure_rootfs(locked=True)


def test_cached_tarball_is_verified_against_the_lock(project, monkeypatch):
    """A cached tarball with the lock's sha256 is used as is; one with other bytes is rebuilt."""
    content = b"rootfs bytes"
    sha = hashlib.sha256(content).hexdigest()
    lock = make_lock(sha=sha)
    base_image.PACKAGE_LOCK.write_text(base_image.render_lock(lock, BASE))
    cached = base_image.cached_tarball(lock)
    cached.write_bytes(content)
    monkeypatch.setattr(base_image, "build_locked", lambda *a: pytest.fail("a verified cache must not rebuild"))
    assert base_image.ensure_rootfs(locked=True).tarball == cached

    cached.write_bytes(b"tampered")
    built = []

    def rebuild(base, lock, target):
        built.append(target)
        target.write_bytes(content)
        return "test source", []

    monkeypatch.setattr(base_image, "build_locked", rebuild)
    result = base_image.ensure_rootfs(locked=True)
    assert built == [cached]
    assert result.source == "test source"
    assert cached.read_bytes() == content


def test_set_snapshot_epoch_rewrites_one_line(tmp_path):
    """Only the snapshot_epoch value and its date comment change in params.yaml."""
    params = tmp_path / "params.yaml"
    params.write_text("image:\n  base:\n    # keep me\n    snapshot_epoch: 1      # old\n    suite: bookworm\n")
    base_image.set_snapshot_epoch(1795392000, params)
    assert params.read_text() == (
        "image:\n  base:\n    # keep me\n    snapshot_epoch: 1795392000      # 2026-11-23T00:00:00Z\n"
        "    suite: bookworm\n"
    )


def test_no_reachable_source_is_said_plainly(project, monkeypatch):
    """When no source could be reached or built from, the error says so instead of naming packages."""
    base_image.PACKAGE_LOCK.write_text(base_image.render_lock(make_lock(), BASE))
    monkeypatch.setattr(base_image, "build_locked", lambda *a: ("", []))
    with pytest.raises(UserError, match="no package source could be reached"):
        base_image.ensure_rootfs(locked=True)
