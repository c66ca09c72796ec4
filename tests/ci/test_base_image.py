"""The base image's Debian package set is locked: parsing, rendering and drift detection."""

from __future__ import annotations

import io
import tarfile

import pytest

from ci import base_image
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
BASE = {"suite": "bookworm", "packages": ["python3"], "snapshot_epoch": 1}


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


def test_lock_round_trips(tmp_path):
    """render_lock writes what read_lock reads back."""
    packages = base_image.parse_dpkg_status(STATUS)
    path = tmp_path / "base-packages.lock"
    path.write_text(base_image.render_lock(packages, BASE))
    assert base_image.read_lock(path) == packages


def test_drift_names_added_removed_and_changed():
    """Every kind of difference is named with both versions."""
    drift = base_image.package_drift({"a:all": "1", "b:all": "1"}, {"b:all": "2", "c:all": "1"})
    assert drift == ["removed a:all (locked 1)", "changed b:all: locked 1, now 2", "added c:all=1"]


def test_a_drifted_rootfs_fails_the_build(tmp_path, monkeypatch):
    """check_packages raises a UserError that names the package and says how to accept it."""
    lock = tmp_path / "base-packages.lock"
    lock.write_text(base_image.render_lock({"adduser:all": "3.134", "python3:amd64": "3.11.2-1"}, BASE))
    monkeypatch.setattr(base_image, "PACKAGE_LOCK", lock)
    rootfs = tmp_path / "rootfs.tar"
    make_rootfs(rootfs, STATUS)
    with pytest.raises(UserError, match=r"changed python3:amd64: locked 3\.11\.2-1, now 3\.11\.2-1\+b1") as info:
        base_image.check_packages(rootfs)
    assert "--update-lock" in str(info.value)


def test_a_matching_rootfs_passes(tmp_path, monkeypatch):
    """No drift, no error."""
    lock = tmp_path / "base-packages.lock"
    lock.write_text(base_image.render_lock(base_image.parse_dpkg_status(STATUS), BASE))
    monkeypatch.setattr(base_image, "PACKAGE_LOCK", lock)
    rootfs = tmp_path / "rootfs.tar"
    make_rootfs(rootfs, STATUS)
    base_image.check_packages(rootfs)


def test_missing_lock_says_how_to_make_one(tmp_path):
    """Without a lock the build stops and names the command that writes it."""
    with pytest.raises(UserError, match="--update-lock"):
        base_image.read_lock(tmp_path / "nope.lock")


def test_repository_lock_matches_params():
    """The committed lock exists and holds the packages params.yaml asks for."""
    locked = base_image.read_lock()
    for package in base_image.base_config()["packages"]:
        assert any(name.split(":")[0] == package for name in locked), package
