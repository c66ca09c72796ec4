"""The gate passes only when every job it needs succeeded."""

from __future__ import annotations

import json

from ci.runner.gate import gate, main


def needs(**results: str) -> dict:
    """A `needs` context as `toJSON(needs)` gives it."""
    return {name: {"result": result, "outputs": {}} for name, result in results.items()}


def test_all_success_passes():
    """Nothing to report when every job succeeded."""
    assert gate(needs(lint="success", test="success")) == []


def test_failed_cancelled_and_skipped_jobs_fail_the_gate():
    """A skipped job counts as not done: GitHub skips the dependents of a failed job."""
    assert gate(needs(lint="failure", test="cancelled", unit="skipped", repro="success")) == [
        "lint (failure)",
        "test (cancelled)",
        "unit (skipped)",
    ]


def test_skipped_is_allowed_only_where_asked():
    """--allow-skipped names the jobs that may legitimately not run."""
    assert gate(needs(scan="skipped", lint="success"), frozenset({"scan"})) == []
    assert gate(needs(scan="failure"), frozenset({"scan"})) == ["scan (failure)"]


def test_a_gate_with_nothing_to_check_fails():
    """An empty needs list is a broken workflow, not a pass."""
    assert gate({})


def test_main_reads_needs_from_the_environment(monkeypatch, capsys):
    """Exit 0 and `gate: passed` on success; exit 1 naming the failed job otherwise."""
    monkeypatch.setenv("NEEDS", json.dumps(needs(lint="success")))
    assert main([]) == 0
    assert "gate: passed" in capsys.readouterr().out
    monkeypatch.setenv("NEEDS", json.dumps(needs(lint="failure")))
    assert main([]) == 1
    assert "lint (failure)" in capsys.readouterr().err


def test_main_without_needs_says_how_to_set_it(monkeypatch, capsys):
    """Run outside the workflow, it explains the NEEDS variable instead of passing."""
    monkeypatch.delenv("NEEDS", raising=False)
    assert main([]) == 2
    assert "toJSON(needs)" in capsys.readouterr().err
