"""Finding a Docker engine: an explicit CLI is honoured, and a missing engine is one clear sentence."""

from __future__ import annotations

import pytest

from ci import engine
from ci.project import UserError


def test_docker_cli_override(monkeypatch):
    """DOCKER_CLI names the CLI to use."""
    engine.docker_cli.cache_clear()
    monkeypatch.setenv("DOCKER_CLI", "/opt/docker")
    try:
        assert engine.docker_cli() == "/opt/docker"
    finally:
        engine.docker_cli.cache_clear()


def test_no_engine_and_not_allowed_to_start_says_how(monkeypatch):
    """With NO_START_ENGINE set and no engine, the error tells the user how to start one."""
    monkeypatch.setattr(engine, "engine_answers", lambda cli="docker": False)
    monkeypatch.setenv("NO_START_ENGINE", "1")
    with pytest.raises(UserError, match="No Docker engine answers: start one"):
        engine.ensure_engine()


def test_engine_answers_is_false_for_a_missing_cli():
    """A CLI that is not installed means no engine, not a crash."""
    assert engine.engine_answers("/nonexistent/docker") is False
