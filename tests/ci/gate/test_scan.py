"""The scan's verdict and summary: a check that did not run is never passed, and the gate says why it failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci import records
from ci.gate import scan
from ci.project import ROOT, UserError

TARGET = scan.Target(
    variant="cpu",
    ref="ml-model-image/breast-cancer:v-cpu",
    image_id="sha256:" + "a" * 64,
    dockerfile=Path("Dockerfile"),
    bento_dir=Path("bento"),
    build_args={},
    local_bases=(),
)


def offline_checks() -> list[scan.Check]:
    """Every offline check, passed."""
    return [scan.Check.result(name, []) for name in ("secrets: image layers", "SBOM", "policy: healthcheck")]


def test_a_check_that_did_not_run_cannot_have_passed():
    """The one rule of the summary: not run means neither passed nor failed."""
    with pytest.raises(ValueError, match="did not run"):
        scan.Check("x", ran=False, passed=True)
    with pytest.raises(ValueError, match="ran, so it passed or failed"):
        scan.Check("x", ran=True, passed=None)
    assert scan.Check.not_run("x", "why").status == "NOT RUN"


def test_a_check_with_findings_failed():
    """Findings mean the check failed; none means it passed."""
    assert scan.Check.result("x", ["bad"]).status == "FAILED"
    assert scan.Check.result("x", []).status == "passed"


def test_every_check_passed_passes_the_gate():
    """All checks ran and passed, trivy included: the gate passes."""
    verdict = scan.Verdict([*offline_checks(), scan.Check.result(scan.TRIVY_CHECK, [])])
    assert verdict.passed
    assert not verdict.without_vulnerability_scan


def test_a_check_that_did_not_run_fails_the_gate():
    """An offline check that could not run blocks the gate like a failure."""
    verdict = scan.Verdict([*offline_checks(), scan.Check.not_run("SBOM", "syft missing")])
    assert not verdict.passed
    assert [c.name for c in verdict.blocking] == ["SBOM"]


def test_missing_trivy_fails_unless_the_user_allows_it():
    """Without trivy the gate fails and says how to go on; with --allow-missing-trivy it passes, loudly."""
    checks = [*offline_checks(), scan.Check.not_run(scan.TRIVY_CHECK, "trivy cannot be downloaded here")]
    refused = scan.Verdict(checks)
    assert not refused.passed
    assert "--allow-missing-trivy" in scan.summary(TARGET, refused)
    allowed = scan.Verdict(checks, allow_missing_trivy=True)
    assert allowed.passed
    assert allowed.without_vulnerability_scan
    text = scan.summary(TARGET, allowed)
    assert "NO VULNERABILITY SCAN" in text
    assert "gate: PASSED" in text


def test_allowing_missing_trivy_does_not_excuse_other_checks():
    """--allow-missing-trivy concerns trivy only: another check that did not run still fails the gate."""
    checks = [scan.Check.not_run("SBOM", "x"), scan.Check.not_run(scan.TRIVY_CHECK, "y")]
    assert not scan.Verdict(checks, allow_missing_trivy=True).passed


def test_a_failed_trivy_scan_is_not_excused_by_allow_missing_trivy():
    """The option lets trivy be missing, not wrong: trivy findings still block."""
    checks = [*offline_checks(), scan.Check.result(scan.TRIVY_CHECK, ["CRITICAL CVE-1 x 1 -> 2"])]
    assert not scan.Verdict(checks, allow_missing_trivy=True).passed


def test_no_checks_is_no_pass():
    """An empty list of checks never passes."""
    assert not scan.Verdict([]).passed


def test_the_summary_lists_every_check_with_its_result_and_findings():
    """Each check appears with passed, FAILED or NOT RUN; findings are listed under their check."""
    checks = [
        scan.Check.result("secrets: image layers", [], "30000 files"),
        scan.Check.result("policy: non_root_user", ["non_root_user: the final stage has no USER"]),
        scan.Check.not_run(scan.TRIVY_CHECK, "trivy is not on PATH"),
    ]
    text = scan.summary(TARGET, scan.Verdict(checks))
    rows = {line.split("  ")[0]: line for line in text.splitlines() if line.startswith(("secrets", "policy", "vuln"))}
    assert "passed" in rows["secrets: image layers"]
    assert "FAILED" in rows["policy: non_root_user"]
    assert "NOT RUN" in rows[scan.TRIVY_CHECK]
    assert "passed" not in rows[scan.TRIVY_CHECK]
    assert "  non_root_user: the final stage has no USER" in text
    assert "gate: FAILED: policy: non_root_user (FAILED), vulnerabilities: trivy (NOT RUN)" in text


def test_the_record_is_what_push_reads(tmp_path, monkeypatch):
    """build/scan-<variant>.json carries the verdict and every check; push's gate accepts a passed one."""
    monkeypatch.setattr(records, "BUILD_DIR", tmp_path)
    verdict = scan.Verdict([*offline_checks(), scan.Check.not_run(scan.TRIVY_CHECK, "no trivy")], True)
    path = scan.write_record(TARGET, verdict, tmp_path / "scan" / "cpu")
    record = json.loads(path.read_text())
    assert path == tmp_path / "scan-cpu.json"
    assert record["passed"] is True
    assert record["without_vulnerability_scan"] is True
    assert [c["passed"] for c in record["checks"]] == [True, True, True, None]
    assert "WITHOUT a vulnerability scan" in records.check_gate("cpu", TARGET.image_id)


def test_a_policy_whose_input_is_missing_did_not_run(tmp_path):
    """When the SBOM failed, the licence policy cannot run: it is NOT RUN, not a vacuous pass."""
    document = {"dockerfile": {"path": "Dockerfile", "stages": []}, "config": {}, "build": {"local_bases": []}}
    checks = {c.name: c for c in scan.policy_checks(document, tmp_path)}
    assert checks["policy: licenses"].status == "NOT RUN"
    assert "needs input.packages" in checks["policy: licenses"].detail
    assert checks["policy: no_build_tools"].status == "NOT RUN"
    assert checks["policy: oci_labels"].ran
    assert json.loads((tmp_path / "policy.json").read_text())


def test_the_trivy_waiver_check_runs_without_trivy():
    """The waiver rules are checked offline; the committed file passes."""
    check = scan.waiver_check()
    assert check.ran
    assert check.passed, check.findings


def test_only_the_projects_own_base_counts_as_local(monkeypatch, tmp_path):
    """The base built by ci/image/base.py (<repository>-base:<sha>) is local; any other FROM is not."""
    monkeypatch.setattr(records, "BUILD_DIR", tmp_path)
    base = "ml-model-image/breast-cancer-base:e99c9c0e8f96f221"
    record = {"ref": "r:v-cpu", "id": "sha256:1", "base": base, "dockerfile": "D", "build_args": {"BASE_IMAGE": base}}
    (tmp_path / "image-cpu.json").write_text(json.dumps(record))
    assert scan.target_for("cpu").local_bases == ("ml-model-image/breast-cancer-base:e99c9c0e8f96f221",)
    (tmp_path / "image-cpu.json").write_text(json.dumps({**record, "base": "python:3.11-slim"}))
    assert scan.target_for("cpu").local_bases == ()


def test_the_target_is_the_dockerfile_and_build_arguments_the_build_recorded(monkeypatch, tmp_path):
    """The policies see what `docker build` got (one definition: the build's record), and an older record
    without them is told to build again."""
    monkeypatch.setattr(records, "BUILD_DIR", tmp_path)
    args = {"BASE_IMAGE": "b:1", "UID": "10001", "VARIANT": "cpu", "PORT": "3000"}
    record = {
        "ref": "r:v-cpu",
        "id": "sha256:1",
        "base": "b:1",
        "dockerfile": "bentos/x/Dockerfile",
        "build_args": args,
    }
    records.write_image(record, "cpu", tmp_path)
    target = scan.target_for("cpu")
    assert target.build_args == args
    assert target.dockerfile == ROOT / "bentos/x/Dockerfile"
    records.write_image({k: v for k, v in record.items() if k != "build_args"}, "cpu", tmp_path)
    with pytest.raises(UserError, match="run `nox -s build`"):
        scan.target_for("cpu")
