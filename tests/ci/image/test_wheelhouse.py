"""The wheelhouse holds exactly the lock's wheels, found by hash, without a download when cached."""

from __future__ import annotations

import hashlib
import os

import pytest

from ci.image import wheelhouse
from ci.project import UserError


def _wheel(pool, name: str, content: bytes) -> str:
    (pool / name).write_bytes(content)
    return hashlib.sha256(content).hexdigest()


@pytest.fixture(name="pool")
def fixture_pool(tmp_path, monkeypatch):
    pool = tmp_path / "pool"
    pool.mkdir()
    monkeypatch.setattr(wheelhouse, "POOL", pool)
    monkeypatch.setattr(wheelhouse, "INDEX", pool / "index.json")
    return pool


def test_cached_wheels_are_linked_without_download(pool, tmp_path, monkeypatch):
    """When every pinned hash is in the pool, nothing is downloaded and stale files are dropped."""
    h1 = _wheel(pool, "a-1.0-py3-none-any.whl", b"a")
    h2 = _wheel(pool, "b-2.0-py3-none-any.whl", b"b")
    _wheel(pool, "old-0.1-py3-none-any.whl", b"old")
    lock = tmp_path / "serve.lock"
    lock.write_text(f"a==1.0 \\\n    --hash=sha256:{h1}\nb==2.0 \\\n    --hash=sha256:{h2}\n")
    monkeypatch.setattr(wheelhouse, "download", lambda pins: pytest.fail(f"downloaded {pins}"))
    out = tmp_path / "wheelhouse"
    (out.mkdir(), (out / "stale.whl").write_text("x"))
    chosen = wheelhouse.assemble(lock, out)
    assert sorted(p.name for p in out.iterdir()) == ["a-1.0-py3-none-any.whl", "b-2.0-py3-none-any.whl"]
    assert chosen["a"].read_bytes() == b"a"


def test_a_wheel_with_the_wrong_hash_is_not_used(pool, tmp_path, monkeypatch):
    """A file with the right name but other bytes does not satisfy the lock: it must be fetched."""
    _wheel(pool, "a-1.0-py3-none-any.whl", b"tampered")
    lock = tmp_path / "serve.lock"
    lock.write_text(f"a==1.0 \\\n    --hash=sha256:{hashlib.sha256(b'a').hexdigest()}\n")
    asked = []
    monkeypatch.setattr(wheelhouse, "download", asked.append)
    with pytest.raises(UserError, match=r"no cp311 manylinux wheel matching the lock for a==1\.0"):
        wheelhouse.assemble(lock, tmp_path / "wheelhouse")
    assert [p.name for p in asked[0]] == ["a"]


def test_missing_lock_is_a_clear_error(pool, tmp_path):
    """No lock file: the error says how to make one."""
    with pytest.raises(UserError, match="nox -s lock"):
        wheelhouse.assemble(tmp_path / "nope.lock", tmp_path / "wheelhouse")


def test_target_is_the_image_python():
    """pip download asks for CPython 3.11 manylinux x86-64 wheels, whatever the host runs."""
    args = " ".join(wheelhouse.TARGET)
    assert "--python-version 3.11" in args
    assert "--abi cp311" in args
    assert "manylinux_2_36_x86_64" in args
    assert "manylinux2014_x86_64" in args


def _tamper_keeping_size_and_time(path, content: bytes) -> None:
    """Rewrite a file with other bytes of the same length and give it back its mtime: the index cannot tell."""
    stat = path.stat()
    assert len(content) == stat.st_size
    path.write_bytes(content)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _lock(path, pins: dict[str, str]) -> None:
    path.write_text("".join(f"{name}==1.0 \\\n    --hash=sha256:{digest}\n" for name, digest in pins.items()))


def test_a_cached_wheel_changed_behind_the_index_fails_the_build(pool, tmp_path, monkeypatch):
    """A pool wheel whose bytes changed while its size and time did not is caught by hashing it again.

    The error is one sentence that names the cached file and says to delete it and run again.
    """
    digest = _wheel(pool, "a-1.0-py3-none-any.whl", b"good")
    lock = tmp_path / "serve.lock"
    _lock(lock, {"a": digest})
    wheelhouse.assemble(lock, tmp_path / "wheelhouse")  # indexes the good file
    _tamper_keeping_size_and_time(pool / "a-1.0-py3-none-any.whl", b"evil")
    monkeypatch.setattr(wheelhouse, "download", lambda pins: pytest.fail(f"downloaded {pins}"))
    with pytest.raises(UserError) as caught:
        wheelhouse.assemble(lock, tmp_path / "wheelhouse")
    message = str(caught.value)
    assert message.startswith(f"{pool / 'a-1.0-py3-none-any.whl'} has sha256 {hashlib.sha256(b'evil').hexdigest()}")
    assert message.endswith("does not allow for a==1.0: delete that file and run the build again to download it anew.")


def test_pip_is_checked_before_any_other_wheel(pool, tmp_path):
    """pip's wheel runs the install that checks every other hash, so it is the first one checked."""
    pins = {"a": _wheel(pool, "a-1.0-py3-none-any.whl", b"a"), "pip": _wheel(pool, "pip-1.0-py3-none-any.whl", b"p")}
    lock = tmp_path / "serve.lock"
    _lock(lock, pins)
    wheelhouse.assemble(lock, tmp_path / "wheelhouse")
    for name in pins:
        _tamper_keeping_size_and_time(pool / f"{name}-1.0-py3-none-any.whl", b"x")
    with pytest.raises(UserError, match=r"pip-1\.0-py3-none-any\.whl has sha256 .* for pip==1\.0"):
        wheelhouse.assemble(lock, tmp_path / "wheelhouse")


def test_every_wheel_is_hashed_from_its_bytes(pool, tmp_path, monkeypatch):
    """The check reads every wheel of the wheelhouse, whatever the pool's index says."""
    pins = {"a": _wheel(pool, "a-1.0-py3-none-any.whl", b"a"), "pip": _wheel(pool, "pip-1.0-py3-none-any.whl", b"p")}
    lock = tmp_path / "serve.lock"
    _lock(lock, pins)
    wheelhouse.assemble(lock, tmp_path / "wheelhouse")  # the index now knows both files
    hashed = []
    real = wheelhouse.sha256_file
    monkeypatch.setattr(wheelhouse, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    chosen = wheelhouse.assemble(lock, tmp_path / "wheelhouse")
    assert hashed == ["pip-1.0-py3-none-any.whl", "a-1.0-py3-none-any.whl"]
    assert sorted(chosen) == ["a", "pip"]
