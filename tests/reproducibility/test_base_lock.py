"""The base follows base-packages.lock against Debian's real archive, in a fresh clone.

A locked build installs exactly the committed versions (whatever Debian published since) and gets
the locked rootfs sha256; a version no source serves fails a locked build with the refresh command
and is refreshed by a build at a terminal, whose new lock a locked build then reproduces. The base
is the same for every variant, so this runs once, in `reproduce(cpu)`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci.project import ROOT

pytestmark = [
    pytest.mark.reproducibility,
    pytest.mark.skipif(
        os.environ.get("IMAGE_VARIANT", "cpu") != "cpu", reason="the base is the same for every variant: cpu checks it"
    ),
]
ROOTFS = (
    "import json; from ci.image.base import ensure_rootfs; r = ensure_rootfs(locked={locked}); "
    "print(json.dumps({{'source': r.source, 'changes': r.lock_changes}}))"
)


@pytest.fixture(name="clone")
def fixture_clone(tmp_path: Path) -> Path:
    """A fresh clone of the last commit, with its own empty .cache/."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    return clone


def rootfs(clone: Path, *, locked: bool) -> subprocess.CompletedProcess:
    """Run ensure_rootfs in the clone, neither CI nor BASE_LOCKED set: `locked` alone decides."""
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "BASE_LOCKED")}
    return subprocess.run(
        [sys.executable, "-c", ROOTFS.format(locked=locked)], cwd=clone, env=env, capture_output=True, text=True
    )


def set_locked_version(clone: Path, package: str, version: str) -> None:
    """Claim another version of `package` in the clone's lock."""
    lock = clone / "base-packages.lock"
    text, count = re.subn(rf"^{re.escape(package)} = .*$", f"{package} = {version}", lock.read_text(), flags=re.M)
    assert count == 1, package
    lock.write_text(text)


def test_the_committed_lock_is_served_exactly(clone):
    """Today, after Debian's updates since the commit, a locked build gets every locked version and the locked bytes."""
    proc = rootfs(clone, locked=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exactly the locked packages" in proc.stderr
    assert "as locked" in proc.stderr
    assert json.loads(proc.stdout)["changes"] == []


def test_an_unserved_version_fails_locked_and_is_refreshed_at_a_terminal(clone):
    """Locked: one error naming the package and the refresh command. Unlocked: the lock moves, and is reproducible."""
    set_locked_version(clone, "libpam0g:amd64", "1.5.2-6+deb12u0missing")
    locked = rootfs(clone, locked=True)
    assert locked.returncode == 1
    assert "libpam0g:amd64: locked 1.5.2-6+deb12u0missing" in locked.stderr
    assert "bash ci/nox.sh -s base_lock" in locked.stderr

    epoch_before = (clone / "params.yaml").read_text()
    refreshed = rootfs(clone, locked=False)
    assert refreshed.returncode == 0, refreshed.stderr[-3000:]
    changes = json.loads(refreshed.stdout)["changes"]
    assert any(change.startswith("changed libpam0g:amd64: locked 1.5.2-6+deb12u0missing, now ") for change in changes)
    assert "1.5.2-6+deb12u0missing" not in (clone / "base-packages.lock").read_text()
    assert (clone / "params.yaml").read_text() != epoch_before  # snapshot_epoch moved to the refresh time

    shutil.rmtree(clone / ".cache" / "base")  # rebuilt from the archive, not the refresh's own tarball
    again = rootfs(clone, locked=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "as locked" in again.stderr
