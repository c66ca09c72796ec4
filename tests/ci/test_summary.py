"""The main job's summary counts test results from pytest's JUnit XML."""

from __future__ import annotations

from ci.summary import test_counts as count_results

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="10" time="1.0"></testsuite></testsuites>
"""


def test_counts_split_passed_from_the_rest(tmp_path):
    """passed = tests - failures - errors - skipped."""
    path = tmp_path / "unit.xml"
    path.write_text(JUNIT)
    assert count_results(path) == {"passed": 4, "failed": 2, "errors": 1, "skipped": 3}
