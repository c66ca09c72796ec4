"""Fixtures shared by the ci/ unit tests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from ci import project


@pytest.fixture(name="git_repo")
def fixture_git_repo(tmp_path, monkeypatch) -> Callable[..., str]:
    """A committed repository in tmp_path that ci.project.git() runs in; returns a `git(*args)` runner.

    It holds a tracked params.yaml and a .gitignore that ignores build/, like the project. The user's
    own git configuration is shut out, so a global excludes file cannot hide an untracked file.
    """
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setattr(project, "ROOT", tmp_path)

    def git(*args: str) -> str:
        identity = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
        done = subprocess.run(["git", *identity, *args], cwd=tmp_path, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "--quiet")
    (tmp_path / ".gitignore").write_text("/build/\n")
    (tmp_path / "params.yaml").write_text("a: 1\n")
    git("add", ".gitignore", "params.yaml")
    git("commit", "--quiet", "-m", "initial")
    return git
