"""The Dockerfile checks that hadolint lacks: a non-root USER in the final stage, no ADD from URLs."""

from __future__ import annotations

from ci.lint.dockerfile import ROOT, dockerfiles, extra_findings, logical_lines


def test_no_user_at_all_is_a_finding():
    """hadolint's DL3002 is silent without USER; this check is not."""
    assert any("no USER" in f for f in extra_findings("FROM base\nRUN true\n"))


def test_user_in_an_earlier_stage_does_not_count():
    """USER resets at each FROM: only the final stage's user matters."""
    text = "FROM a AS build\nUSER 1000\nFROM b\nRUN true\n"
    assert any("no USER" in f for f in extra_findings(text))


def test_root_user_is_a_finding():
    """USER root and USER 0 (with or without group) are findings."""
    assert extra_findings("FROM a\nUSER root\n")
    assert extra_findings("FROM a\nUSER 0:0\n")


def test_add_from_url_is_a_finding_even_across_continuations():
    """ADD https://... is flagged, also when split over lines."""
    text = "FROM a\nADD \\\n  https://example.invalid/x.tgz /x\nUSER 1000\n"
    assert [f for f in extra_findings(text) if "ADD from a URL" in f]


def test_clean_final_stage_has_no_findings():
    """A non-root USER and a local COPY/ADD pass."""
    assert extra_findings("FROM a\nADD local.tar /\nUSER 10001:10001\n") == []


def test_logical_lines_join_continuations_and_drop_comments():
    """Continuation lines form one instruction; comment lines vanish."""
    assert logical_lines("# c\nRUN a \\\n  b\nUSER x\n") == ["RUN a    b", "USER x"]


def test_project_dockerfiles_pass_the_extra_checks():
    """Every Dockerfile of the project is found and passes these checks."""
    files = dockerfiles()
    assert ROOT / "bentos" / "classifier" / "Dockerfile" in files
    for path in files:
        assert extra_findings(path.read_text()) == [], path
