"""The wheelhouse holds exactly the lock's wheels, found by hash, without a download when cached."""

from __future__ import annotations

import hashlib

import pytest

from ci import wheelhouse
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
