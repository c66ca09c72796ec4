"""Fixtures shared by the ci/ unit tests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from ci import project, records


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


@pytest.fixture(name="scan_record")
def fixture_scan_record() -> Callable[..., records.ScanRecord]:
    """Makes build/scan-cpu.json's content as `nox -s scan` writes it: one SBOM check passed, plus any `failed`."""

    def scan_record(*, image_id="sha256:abc", passed=True, without_trivy=False, failed=()) -> records.ScanRecord:
        checks: list[records.CheckRecord] = [
            {"name": "SBOM", "ran": True, "passed": True, "findings": [], "detail": ""}
        ]
        checks += [{"name": name, "ran": True, "passed": False, "findings": ["x"], "detail": ""} for name in failed]
        return {
            "variant": "cpu",
            "image_id": image_id,
            "passed": passed,
            "without_vulnerability_scan": without_trivy,
            "checks": checks,
        }

    return scan_record
