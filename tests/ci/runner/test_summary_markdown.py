"""The job summary shows the built images, what was pushed and the test results, in Markdown."""

from __future__ import annotations

import json

import pytest

from ci.runner import summary as job_summary
from ci.runner.summary import human_bytes, junit_counts, render

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="12.5">
  <testcase classname="tests.contract.test_predict" name="test_golden" time="1.0"/>
  <testcase classname="tests.contract.test_predict" name="test_batch" time="1.0"/>
  <testcase classname="tests.contract.test_errors" name="test_413" time="1.0">
    <failure message="assert 500 == 413&#10;more detail">trace</failure>
  </testcase>
  <testcase classname="tests.contract.test_lifecycle" name="test_sigterm" time="1.0">
    <error message="container did not start">trace</error>
  </testcase>
  <testcase classname="tests.contract.test_image" name="test_gpu" time="0.0">
    <skipped message="no GPU"/>
  </testcase>
</testsuite></testsuites>
"""


@pytest.fixture(name="build_dir")
def fixture_build_dir(tmp_path):
    """A build/ directory as the test and push jobs leave it."""
    image = {
        "variant": "cpu",
        "ref": "ml-model-image/breast-cancer:abc-cpu",
        "id": "sha256:" + "1" * 64,
        "size": 1759192024,
        "rootfs_layers": ["sha256:a", "sha256:b"],
        "model_tag": "breast_cancer_classifier:6587079eeddb745a",
        "bento": "breast_cancer_service:6587079eeddb745a-4d843b9b",
        "bento_digest": "62d6b5",
    }
    (tmp_path / "image-cpu.json").write_text(json.dumps(image))
    push = {
        "variant": "cpu",
        "digest": "sha256:" + "2" * 64,
        "refs": ["ghcr.io/o/r:v1.0.0-cpu", "ghcr.io/o/r:sha-abc-cpu"],
    }
    (tmp_path / "push-cpu.json").write_text(json.dumps(push))
    (tmp_path / "test-results").mkdir()
    (tmp_path / "test-results" / "contract-cpu.xml").write_text(JUNIT)
    return tmp_path


def test_human_bytes():
    """Sizes read as people write them."""
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(1759192024) == "1.6 GiB"


def test_junit_counts_and_failing_test_names(build_dir):
    """Totals add up; failures and errors are named with the first line of their message."""
    counts = junit_counts(build_dir / "test-results" / "contract-cpu.xml")
    assert (counts["passed"], counts["failures"], counts["errors"], counts["skipped"]) == (2, 1, 1, 1)
    assert counts["failed"] == [
        "tests.contract.test_errors::test_413: assert 500 == 413",
        "tests.contract.test_lifecycle::test_sigterm: container did not start",
    ]


def test_render_has_image_digests_sizes_pushed_refs_and_results(build_dir):
    """Everything a reviewer looks for is in the Markdown: image, ID, size, pushed refs, test rows."""
    text = render(build_dir)
    assert "| image | `ml-model-image/breast-cancer:abc-cpu` |" in text
    assert f"`sha256:{'1' * 64}`" in text
    assert "| size | 1.6 GiB |" in text
    assert "| layers | 2 |" in text
    assert f"| `ghcr.io/o/r:v1.0.0-cpu` | `sha256:{'2' * 64}` |" in text
    assert "| contract-cpu ❌ | 2 | 1 | 1 | 1 | 12 s |" in text
    assert "- `tests.contract.test_errors::test_413: assert 500 == 413`" in text


def test_missing_files_are_left_out(tmp_path):
    """A job that built nothing and ran no test gets an empty summary, not an error."""
    assert render(tmp_path) == ""


def test_unreadable_results_are_reported_not_fatal(tmp_path):
    """A truncated JUnit file (a killed run) shows as unreadable; the rest still renders."""
    (tmp_path / "test-results").mkdir()
    (tmp_path / "test-results" / "unit.xml").write_text("<testsuite")
    assert "| unit | unreadable:" in render(tmp_path)


def test_main_appends_to_the_step_summary(build_dir, tmp_path, monkeypatch):
    """In GitHub Actions the summary is appended to $GITHUB_STEP_SUMMARY, keeping what was there."""
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setattr(job_summary, "BUILD_DIR", build_dir)
    assert job_summary.main([]) == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n")
    assert "contract-cpu" in text


def test_scan_section_shows_every_check_and_says_when_trivy_did_not_run(tmp_path):
    """Each check with passed/failed/not run, the findings of failed ones, and a warning without trivy."""
    record = {
        "variant": "cpu",
        "image_id": "sha256:abc",
        "passed": False,
        "without_vulnerability_scan": True,
        "checks": [
            {"name": "SBOM", "ran": True, "passed": True, "findings": [], "detail": "118 deb, 88 pypi packages"},
            {"name": "policy: non_root_user", "ran": True, "passed": False, "findings": ["non_root_user: no USER"]},
            {"name": "vulnerabilities: trivy", "ran": False, "passed": None, "findings": [], "detail": "no trivy"},
        ],
    }
    (tmp_path / "scan-cpu.json").write_text(json.dumps(record))
    text = job_summary.render(tmp_path)
    assert "**Scan gate (cpu): FAILED**" in text
    assert "| SBOM | ✅ passed | 0 | 118 deb, 88 pypi packages |" in text
    assert "| policy: non_root_user | ❌ failed | 1 |" in text
    assert "| vulnerabilities: trivy | ⚠️ not run | – | no trivy |" in text
    assert "**No vulnerability scan**" in text
    assert "- `policy: non_root_user: non_root_user: no USER`" in text
