"""Train once per workflow run: the DVC outputs repro hands over make `dvc repro` a no-op, and a retrain shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ci.runner import dvc_outputs as handover

OLD = 1_000_000_000  # an mtime long before the test runs, so that a file written again shows


@pytest.fixture(name="packed")
def fixture_packed(tmp_path) -> tuple[Path, dict]:
    """An archive of dvc.lock, one output and one read-only cache file, made from commit c1."""
    src = tmp_path / "src"
    files = {"dvc.lock": "schema: '2.0'\n", "models/model.bin": "weights", ".dvc/cache/files/md5/ab/cdef": "weights"}
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
        os.utime(src / rel, (OLD, OLD))
    (src / ".dvc/cache/files/md5/ab/cdef").chmod(0o444)
    manifest = {"commit": "c1", "cpu": "a CPU", "outputs": ["models"], "files": handover.fingerprint(src, list(files))}
    archive = tmp_path / "dvc-outputs.tar"
    handover.write_archive(src, archive, manifest)
    return archive, manifest


def test_unpack_puts_every_file_in_place_over_the_checkout(tmp_path, packed):
    """Same bytes and mtimes as packed, the checkout's own dvc.lock and read-only files replaced."""
    archive, manifest = packed
    dest = tmp_path / "dest"
    (dest / ".dvc/cache/files/md5/ab").mkdir(parents=True)
    (dest / "dvc.lock").write_text("the committed one\n")
    (dest / ".dvc/cache/files/md5/ab/cdef").write_text("stale")
    (dest / ".dvc/cache/files/md5/ab/cdef").chmod(0o444)
    assert handover.unpack(dest, archive, commit="c1") == manifest
    assert (dest / "models/model.bin").read_text() == "weights"
    assert handover.verify(dest) == []


def test_verify_names_files_changed_rewritten_or_removed(tmp_path, packed):
    """Other bytes, the same bytes written again (a retrain on the same CPU), a deleted file: each named."""
    archive, _ = packed
    dest = tmp_path / "dest"
    handover.unpack(dest, archive, commit="c1")
    (dest / "dvc.lock").write_text("schema: '2.0'\nother\n")
    (dest / "models/model.bin").write_text("weights")
    (dest / ".dvc/cache/files/md5/ab/cdef").unlink()
    assert handover.verify(dest) == [
        ".dvc/cache/files/md5/ab/cdef: missing",
        "dvc.lock: other bytes",
        "models/model.bin: written again (same bytes)",
    ]


def test_unpack_refuses_outputs_of_another_commit(tmp_path, packed):
    """Outputs made from another commit would not match this checkout's pipeline: refused, saying so."""
    archive, _ = packed
    with pytest.raises(handover.HandoverError, match="made from commit c1, this job checked out c2"):
        handover.unpack(tmp_path / "dest", archive, commit="c2")


def test_unpack_refuses_members_pack_never_writes(tmp_path, packed):
    """A link or a file the manifest does not list is not unpacked at all."""
    archive, _ = packed
    with tarfile.open(archive, "a") as tar:
        link = tarfile.TarInfo("models/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(handover.HandoverError, match="holds what `pack` never writes"):
        handover.unpack(tmp_path / "dest", archive, commit="c1")
    assert not (tmp_path / "dest" / "models").exists()


def test_missing_archive_and_manifest_say_what_to_do(tmp_path):
    """No artifact downloaded, or verify before unpack: one sentence each."""
    with pytest.raises(handover.HandoverError, match="download the `dvc-outputs` artifact"):
        handover.unpack(tmp_path, commit="c1")
    with pytest.raises(handover.HandoverError, match=r"ci/runner/dvc_outputs\.py unpack` first"):
        handover.verify(tmp_path)


def _run(*cmd: str, cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the stage's `python`, and dvc
    git = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    if cmd[0] == "git":
        cmd = ("git", *git, *cmd[1:])
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_after_unpack_dvc_repro_runs_nothing(tmp_path):
    """A real DVC project: trained, packed, unpacked in a fresh clone: `dvc repro` skips every stage.

    pack refuses a workspace that DVC itself would not call up to date.
    """
    first = tmp_path / "first"
    (first / "src").mkdir(parents=True)
    (first / "src/train.py").write_text(
        "from pathlib import Path\nPath('model').mkdir()\nPath('model/w').write_text('1')\n"
    )
    (first / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python src/train.py\n    deps: [src/train.py]\n    outs: [model]\n"
    )
    (first / ".gitignore").write_text("/model\n/build/\n")
    _run("git", "init", "-q", cwd=first)
    _run(sys.executable, "-m", "dvc", "init", "-q", cwd=first)
    assert "Running stage 'train'" in _run(sys.executable, "-m", "dvc", "repro", cwd=first)
    _run("git", "add", "-A", cwd=first)
    _run("git", "commit", "-qm", "trained", cwd=first)
    manifest = handover.pack(first)
    assert manifest["outputs"] == ["model"]
    assert {"dvc.lock", "model/w"} <= set(manifest["files"])
    assert any(path.startswith(".dvc/cache/") for path in manifest["files"])

    second = tmp_path / "second"
    _run("git", "clone", "-q", str(first), str(second), cwd=tmp_path)
    handover.unpack(second, first / handover.ARCHIVE)
    out = _run(sys.executable, "-m", "dvc", "repro", cwd=second)
    assert "Running stage" not in out, out
    assert handover.verify(second) == []
    assert json.loads((second / handover.MANIFEST).read_text())["commit"] == handover.head_commit(second)

    (second / "model/w").write_text("2")  # a stale output: the jobs after repro would train again
    with pytest.raises(handover.HandoverError, match="`dvc status` is not clean"):
        handover.pack(second)
