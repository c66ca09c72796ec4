"""The pieces that make a Bento depend only on its inputs."""

from __future__ import annotations

import os

from ci.bento import EPOCH, bento_version, normalize_modes, source_files, strip_times
from ci.project import ROOT, tree_digest


def test_strip_times_sets_every_creation_time_to_the_epoch(tmp_path):
    """Top-level and nested creation_time values are replaced; other keys stay."""
    yaml_file = tmp_path / "bento.yaml"
    yaml_file.write_text(
        "name: x\ncreation_time: '2026-01-02T03:04:05+00:00'\nmodels:\n- tag: m:1\n  creation_time: now\n"
    )
    strip_times(tmp_path)
    text = yaml_file.read_text()
    assert text.count(f"creation_time: '{EPOCH}'") == 2
    assert "name: x" in text
    assert "2026" not in text


def test_normalize_modes_makes_files_world_readable(tmp_path):
    """0600 files from BentoML become 0644 so the image's non-root user can read them."""
    secret = tmp_path / "d" / "model.yaml"
    secret.parent.mkdir()
    secret.write_text("x")
    secret.chmod(0o600)
    normalize_modes(tmp_path)
    assert oct(secret.stat().st_mode & 0o777) == "0o644"
    assert oct(secret.parent.stat().st_mode & 0o777) == "0o755"


def test_tree_digest_depends_on_content_and_names_not_times(tmp_path):
    """Touching files keeps the digest; changing a byte or a name changes it."""
    (tmp_path / "a.txt").write_text("one")
    first = tree_digest(tmp_path)
    os.utime(tmp_path / "a.txt", (1, 1))
    assert tree_digest(tmp_path) == first
    (tmp_path / "a.txt").write_text("two")
    assert tree_digest(tmp_path) != first
    (tmp_path / "a.txt").rename(tmp_path / "b.txt")
    assert tree_digest(tmp_path) != first


def test_bento_version_joins_model_and_source_hashes():
    """The version is the model's content hash plus 8 hex of the source hash."""
    assert bento_version("0123456789abcdef", "fedcba98" + "0" * 56) == "0123456789abcdef-fedcba98"


def test_sources_are_the_service_and_params_only():
    """The Bento gets the service package and params.yaml, nothing from build/ or tests/."""
    names = {p.relative_to(ROOT).as_posix() for p in source_files()}
    assert "bentos/classifier/service.py" in names
    assert "params.yaml" in names
    assert not any(n.startswith(("build/", "tests/", "pipeline/")) for n in names)
