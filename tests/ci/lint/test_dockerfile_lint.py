"""`nox -s lint` on Dockerfiles: hadolint, plus the gate's own Dockerfile rules (policies/*.rego), not a copy."""

from __future__ import annotations

import pytest

from ci.gate import policy
from ci.lint.dockerfile import ROOT, dockerfiles, policy_findings

GOOD = 'FROM a\nADD local.tar /\nUSER 10001:10001\nHEALTHCHECK CMD ["/bin/true"]\n'


def findings(tmp_path, text: str) -> list[str]:
    """What lint says about a Dockerfile with this text."""
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    return policy_findings(path)


def test_lint_runs_the_gates_dockerfile_policies_and_only_those():
    """The rules lint applies are the gate's policies that read the Dockerfile alone (not the SBOM, the
    image's files, or the build's local base)."""
    names = {path.stem for path in policy.dockerfile_policies()}
    assert names == {"non_root_user", "no_add_from_url", "healthcheck"}


def test_a_clean_dockerfile_has_no_findings(tmp_path):
    """A non-root USER, a local ADD and a HEALTHCHECK pass."""
    assert findings(tmp_path, GOOD) == []


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("FROM base\nRUN true\nHEALTHCHECK CMD true\n", "non_root_user"),  # hadolint's DL3002 is silent here
        ("FROM a AS build\nUSER 1000\nFROM b\nHEALTHCHECK CMD true\n", "non_root_user"),  # USER resets at FROM
        (GOOD + "USER root\n", "non_root_user"),
        (GOOD + "USER 0:0\n", "non_root_user"),
        (GOOD + "ADD \\\n  https://example.invalid/x.tgz /x\n", "no_add_from_url"),  # across a continuation
        (GOOD.replace('HEALTHCHECK CMD ["/bin/true"]\n', ""), "healthcheck"),
    ],
)
def test_each_rule_finds_what_hadolint_misses(tmp_path, text, rule):
    """Each broken Dockerfile is a finding of the rule that forbids it, worded by the policy."""
    found = findings(tmp_path, text)
    assert found
    assert all(f.startswith(f"{rule}: ") for f in found), found


def test_project_dockerfiles_pass():
    """Every Dockerfile of the project is found and passes the gate's Dockerfile rules."""
    files = dockerfiles()
    assert ROOT / "bentos" / "classifier" / "Dockerfile" in files
    for path in files:
        assert policy_findings(path) == [], path
