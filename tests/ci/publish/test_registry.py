"""The local registry's configuration, files and reachability check, without starting a registry."""

from __future__ import annotations

import os
import stat

import pytest
import yaml

from ci.project import UserError
from ci.publish import registry


def test_config_listens_on_loopback_with_htpasswd_auth_and_filesystem_storage(tmp_path):
    """config.yml binds 127.0.0.1 only, keeps blobs under the given directory and asks for htpasswd credentials."""
    text = registry.render_config(storage=tmp_path / "storage", port=5123, htpasswd=tmp_path / "htpasswd", secret="s")
    config = yaml.safe_load(text)
    assert config["http"]["addr"] == "127.0.0.1:5123"
    assert config["storage"] == {"filesystem": {"rootdirectory": str(tmp_path / "storage")}}
    assert config["auth"] == {"htpasswd": {"realm": registry.REALM, "path": str(tmp_path / "htpasswd")}}
    assert config["log"]["accesslog"] == {"disabled": False}  # the registry tests count uploads in it


def test_port_is_read_back_from_an_existing_config(tmp_path):
    """A restarted registry comes back on the port its config names; no or broken config means no port."""
    config = tmp_path / "config.yml"
    assert registry.configured_port(config) is None
    config.write_text(registry.render_config(storage=tmp_path, port=5999, htpasswd=tmp_path / "h", secret="s"))
    assert registry.configured_port(config) == 5999
    config.write_text("http: [")
    assert registry.configured_port(config) is None


def test_private_files_are_owner_only_even_when_they_existed(tmp_path):
    """Credentials and the config are written 0600, also over a world-readable file."""
    path = tmp_path / "password"
    path.write_text("old")
    path.chmod(0o644)
    registry.write_private(path, "secret")
    assert path.read_text() == "secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_free_port_is_free():
    """free_port() returns a port nothing listens on."""
    assert registry.port_is_free(registry.free_port())


def test_ping_of_a_closed_port_is_one_clear_sentence():
    """A registry that does not answer is a UserError that says what to do, not a URLError traceback."""
    port = registry.free_port()
    with pytest.raises(UserError, match=rf"the registry at 127\.0\.0\.1:{port} does not answer .*fix REGISTRY"):
        registry.ping(f"http://127.0.0.1:{port}", timeout=2)


def test_a_recycled_pid_is_not_taken_for_our_registry(tmp_path):
    """The pid file only counts when that process is docker-registry serving this config: `stop` ends nothing else."""
    (tmp_path / "registry.pid").write_text(str(os.getpid()))
    assert registry._pid_of(tmp_path) is None
    (tmp_path / "registry.pid").write_text("not a pid")
    assert registry._pid_of(tmp_path) is None
