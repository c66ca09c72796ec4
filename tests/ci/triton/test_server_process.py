"""ci/triton/server.py without a server: command lines, ports, the log tail, the process-group check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ci.project import UserError
from ci.triton import server


def test_both_servers_listen_on_loopback_only_without_metrics_and_take_the_config_as_written(tmp_path: Path):
    """The wheel's and the image's command lines share the flags that matter: 127.0.0.1, ports, no metrics."""
    wheel = server.Wheel(tmp_path / "tritonserver", tmp_path / "python", tmp_path / "stub", tmp_path / "libs")
    commands = [
        server.wheel_command(wheel, tmp_path / "repo", tmp_path / "backends", 8000, 8001),
        server.image_command("docker", "c", tmp_path / "repo", 8000, 8001),
    ]
    for command in commands:
        for flag in (
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--http-port=8000",
            "--grpc-port=8001",
            "--allow-metrics=false",
            "--disable-auto-complete-config",
        ):
            assert flag in command
    assert f"--backend-directory={tmp_path / 'backends'}" in commands[0]
    assert f"--model-repository={tmp_path / 'repo'}" in commands[0]


def test_the_image_is_pinned_by_digest_and_mounts_the_repository_read_only(tmp_path: Path):
    """The official image by tag and sha256 digest, on the host's network, the stage's repository read-only."""
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3@sha256:[0-9a-f]{64}", server.IMAGE)
    command = server.image_command("docker", "name", tmp_path, 8000, 8001)
    assert command[:5] == ["docker", "run", "--rm", "--name=name", "--network=host"]
    assert f"--volume={tmp_path}:/models:ro" in command
    assert command[command.index(server.IMAGE) + 1 :][:2] == ["tritonserver", "--model-repository=/models"]


def test_the_log_tail_keeps_the_errors_and_the_last_line_not_the_tables(tmp_path: Path):
    """Triton prints tables around its errors: the tail names the last errors and how it ended, on one line."""
    log = tmp_path / "server.log"
    log.write_text(
        "I1129 loading\nE1129 11:00 server.cc] CudaDriverHelper\nE1129 11:01 model.cc] failed to load: broken\n"
        "+------+\n| Model |\n+------+\nI1129 exiting\nerror: creating server: failed to load all models\n"
    )
    tail = server.log_tail(log)
    assert tail == (
        "E1129 11:00 server.cc] CudaDriverHelper | E1129 11:01 model.cc] failed to load: broken | "
        "error: creating server: failed to load all models"
    )
    assert server.log_tail(tmp_path / "missing.log") == "(empty)"


def test_an_unknown_server_kind_is_one_sentence():
    """TRITON_SERVER must name a kind this module starts."""
    with pytest.raises(UserError, match="names no Triton server: use one of wheel, image"), server.serve("gpu"):
        pass


def test_without_the_wheel_the_error_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch):
    """Outside the Triton environment (no nvidia-pytriton) the wheel's server cannot be found: run `nox -s triton`."""
    monkeypatch.setattr(server.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"nvidia-pytriton is not installed here: run `nox -s triton`"):
        server.Wheel.find()
