"""The same model and code always give the same Bento, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ci.project import ROOT

pytestmark = pytest.mark.reproducibility


def build_bento(tmp_path, name: str) -> str:
    """Build the Bento from scratch (a fresh, empty BentoML store) and return `tag sha256:digest`."""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / f"home-{name}")}
    proc = subprocess.run(
        [sys.executable, "-m", "ci.image.bento", "--out", str(tmp_path / name)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_two_clean_bento_builds_are_identical(tmp_path):
    """Two builds in separate empty stores give the same tag and the same tree digest."""
    first = build_bento(tmp_path, "a")
    second = build_bento(tmp_path, "b")
    assert first == second
    assert ":" in first
    assert "sha256:" in first
    assert not list((tmp_path / "a").rglob("*.pyc"))
