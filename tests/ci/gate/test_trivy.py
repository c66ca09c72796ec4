"""The trivy gate on trivy's own reports: what blocks, what is waived, and which waivers are refused."""

from __future__ import annotations

import json
import stat
from datetime import date
from pathlib import Path

import pytest

from ci.gate import trivy
from ci.project import UserError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "trivy"
TODAY = date(2026, 11, 23)


def report(name: str) -> dict:
    """One of trivy's golden reports (tests/fixtures/trivy/README.md)."""
    return json.loads((FIXTURES / name).read_text())


def waivers_from(tmp_path: Path, text: str) -> tuple[list[trivy.Waiver], list[str]]:
    """Load an ignore file with the given YAML body, as of TODAY."""
    path = tmp_path / ".trivyignore.yaml"
    path.write_text(text)
    return trivy.load_waivers(path, today=TODAY)


def test_a_fixed_critical_blocks_and_an_unfixed_low_does_not():
    """debian-buster: CVE-2019-18224 (CRITICAL, fixed) blocks; CVE-2019-18276 (LOW, no fix) does not."""
    result = trivy.gate(report("debian-buster.json"), [])
    assert [f.id for f in result.blocking] == ["CVE-2019-18224"]
    assert result.blocking[0].fixed == "2.0.5-1+deb10u1"
    assert result.counts == {"vulnerabilities CRITICAL": 1, "vulnerabilities LOW": 1}
    assert not result.passed


def test_ignore_unfixed_report_gives_the_same_gate():
    """trivy's --ignore-unfixed drops only the unfixed finding: the gate is the same."""
    assert [f.id for f in trivy.gate(report("debian-buster-ignore-unfixed.json"), []).blocking] == ["CVE-2019-18224"]


def test_python_packages_high_with_fix_blocks_medium_does_not():
    """pip: Werkzeug CVE-2019-14806 (HIGH, fix 0.15.3) blocks; CVE-2020-28724 (MEDIUM) is counted only."""
    result = trivy.gate(report("pip.json"), [])
    assert [(f.id, f.package, f.fixed) for f in result.blocking] == [("CVE-2019-14806", "Werkzeug", "0.15.3")]
    assert result.counts["vulnerabilities MEDIUM"] == 1


def test_a_failing_high_misconfiguration_blocks():
    """dockerfile: DS-0002 (image user root, HIGH, FAIL) blocks."""
    result = trivy.gate(report("dockerfile.json"), [])
    assert [(f.kind, f.id, f.status) for f in result.blocking] == [("misconfigurations", "DS-0002", "FAIL")]


def test_unfixed_high_is_counted_not_gating():
    """A HIGH without a fixed version cannot be fixed by updating: it is counted, not blocking."""
    data = report("debian-buster.json")
    vuln = data["Results"][0]["Vulnerabilities"][1]
    vuln.pop("FixedVersion")
    result = trivy.gate(data, [])
    assert result.passed
    assert result.unfixed_gating_severity == 1


def test_findings_read_back_every_field_the_summary_shows():
    """Package, versions, purl and target come from the report."""
    (finding,) = [f for f in trivy.parse_report(report("debian-buster.json")) if f.id == "CVE-2019-18224"]
    assert finding.package == "libidn2-0"
    assert finding.installed == "2.0.5-1"
    assert finding.purl.startswith("pkg:deb/debian/libidn2-0@2.0.5-1")
    assert finding.aliases == ("DSA-4613-1",)
    assert finding.text() == (
        "CRITICAL CVE-2019-18224 libidn2-0 2.0.5-1 -> 2.0.5-1+deb10u1 "
        "[testdata/fixtures/images/debian-buster.tar.gz (debian 10.1)]"
    )


def test_a_valid_waiver_waives_and_the_gate_passes(tmp_path):
    """A waiver with a statement and a future expiry, narrowed by a versionless purl, waives the finding."""
    waivers, problems = waivers_from(
        tmp_path,
        """
vulnerabilities:
  - id: CVE-2019-18224
    purls: ["pkg:deb/debian/libidn2-0"]
    statement: "IDN conversion is never called with user input. Reviewed by the maintainers."
    expired_at: 2027-01-31
""",
    )
    assert problems == []
    result = trivy.gate(report("debian-buster.json"), waivers)
    assert result.passed
    assert [(f.id, w.statement[:3]) for f, w in result.waived] == [("CVE-2019-18224", "IDN")]


def test_a_waiver_for_another_package_does_not_waive(tmp_path):
    """The purl narrows the waiver: the same CVE in another package still blocks."""
    waivers, _ = waivers_from(
        tmp_path,
        """
vulnerabilities:
  - id: CVE-2019-18224
    purls: ["pkg:deb/debian/libidn11"]
    statement: "Not this one."
    expired_at: 2027-01-31
""",
    )
    assert not trivy.gate(report("debian-buster.json"), waivers).passed


def test_a_waiver_can_name_the_vendor_advisory_and_a_path(tmp_path):
    """trivy matches vendor IDs (DSA-...) and `paths` globs over the target; so does the gate."""
    waivers, _ = waivers_from(
        tmp_path,
        """
vulnerabilities:
  - id: DSA-4613-1
    paths: ["testdata/fixtures/images/*"]
    statement: "Accepted until the base moves to bookworm."
    expired_at: 2026-12-01
""",
    )
    assert trivy.gate(report("debian-buster.json"), waivers).passed


def test_a_misconfiguration_waiver_matches_its_avd_id(tmp_path):
    """Misconfigurations are waived by ID, old-style AVD- prefix included."""
    waivers, _ = waivers_from(
        tmp_path,
        """
misconfigurations:
  - id: AVD-DS-0002
    statement: "This fixture's image must run as root."
    expired_at: 2027-01-01
""",
    )
    assert trivy.gate(report("dockerfile.json"), waivers).passed


def test_an_expired_waiver_fails_and_waives_nothing(tmp_path):
    """Past its expiry a waiver is a problem (the gate fails) and no longer waives, as in trivy."""
    waivers, problems = waivers_from(
        tmp_path,
        """
vulnerabilities:
  - id: CVE-2019-18224
    statement: "Temporary."
    expired_at: 2026-11-22
""",
    )
    assert waivers == []
    assert problems == [
        ".trivyignore.yaml: vulnerabilities CVE-2019-18224: expired on 2026-11-22: review it, then renew or remove it"
    ]
    assert not trivy.gate(report("debian-buster.json"), waivers).passed


def test_a_waiver_expiring_today_still_holds(tmp_path):
    """expired_at is the last day the waiver holds."""
    waivers, problems = waivers_from(
        tmp_path, "vulnerabilities:\n  - {id: CVE-2019-18224, statement: ok, expired_at: 2026-11-23}\n"
    )
    assert problems == []
    assert len(waivers) == 1


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{id: CVE-1, expired_at: 2027-01-01}", "no `statement`"),
        ("{id: CVE-1, statement: '  '}", "no `statement`"),
        ("{id: CVE-1, statement: fine}", "no `expired_at`"),
        ("CVE-1", "no `statement`"),
        ("{id: CVE-1, statement: fine, expired_at: soon}", "is not a date"),
        ("{statement: fine, expired_at: 2027-01-01}", "no `id`"),
    ],
)
def test_unexplained_or_open_ended_waivers_are_problems(tmp_path, entry, problem):
    """Every waiver needs an id, a statement and an expiry date; otherwise it is refused and waives nothing."""
    waivers, problems = waivers_from(tmp_path, f"vulnerabilities:\n  - {entry}\n")
    assert waivers == []
    assert any(problem in p for p in problems), problems


def test_an_unknown_section_is_a_problem(tmp_path):
    """A typo in a section name would silently waive nothing in trivy; here it is reported."""
    _, problems = waivers_from(tmp_path, "vulnerability:\n  - {id: CVE-1, statement: x, expired_at: 2027-01-01}\n")
    assert len(problems) == 1
    assert "unknown section `vulnerability`" in problems[0]


def test_the_projects_waiver_file_is_valid():
    """policies/.trivyignore.yaml loads without problems (trivy reads the same file)."""
    waivers, problems = trivy.load_waivers()
    assert problems == []
    assert all(w.statement and w.expired_at for w in waivers)


def test_suppressed_findings_are_counted():
    """With --show-suppressed, trivy lists what its ignore file removed; the gate counts them."""
    data = report("debian-buster-ignore-unfixed.json")
    data["ExperimentalModifiedFindings"] = [{"Type": "vulnerability", "Status": "ignored"}]
    assert trivy.gate(data, []).suppressed_by_trivy == 1


def test_another_report_schema_is_refused():
    """A report format the gate does not know is an error, not an empty (passing) report."""
    with pytest.raises(UserError, match="schema 1 is not 2"):
        trivy.parse_report({"SchemaVersion": 1, "Results": []})


def test_sarif_results_are_counted():
    """The SARIF trivy writes for code scanning is 2.1.0 and its results are counted."""
    sarif = FIXTURES / "alpine-310.sarif.json"
    expected = sum(len(run["results"]) for run in json.loads(sarif.read_text())["runs"])
    assert trivy.sarif_results(sarif) == expected > 0


def test_no_trivy_and_no_pull_says_so(tmp_path, monkeypatch):
    """Without a trivy binary, and with an engine that cannot pull the pinned image, trivy is unavailable."""
    monkeypatch.setattr(trivy.shutil, "which", lambda name: None)
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = pull ]; then echo \'Error response from daemon: Get "https://registry-1.docker.io/v2/": '
        "dial tcp: lookup registry-1.docker.io: no such host' >&2; fi\nexit 1\n"
    )
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(trivy.TrivyUnavailable) as caught:
        trivy.find_trivy(str(docker))
    message = str(caught.value)
    assert trivy.TRIVY_IMAGE in message
    assert "cannot be pulled here" in message
    assert "no such host" in message


def test_the_pinned_image_is_pinned_by_digest():
    """The fallback image is an immutable digest, never a tag."""
    assert trivy.TRIVY_IMAGE.startswith("aquasec/trivy@sha256:")
    assert len(trivy.TRIVY_IMAGE.split("@sha256:")[1]) == 64


def test_a_container_run_mounts_inputs_read_only(tmp_path):
    """In the container, the archive and the waivers are mounted read-only and outputs go to /out."""
    runner = trivy.Runner("container", "docker", trivy.TRIVY_VERSION)
    cmd = trivy._command(runner, ["image"], {tmp_path / "a.tar": "/in/image.tar", tmp_path: "/out"})
    mounts = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--mount"]
    assert mounts[0].endswith("target=/in/image.tar,readonly")
    assert mounts[1].endswith("target=/out")
    assert cmd[-2:] == [trivy.TRIVY_IMAGE, "image"]


def test_the_committed_secret_waiver_covers_tornados_test_key_only():
    """trivy's secret scanner reports tornado's test key (HIGH); the committed waiver covers that file, no other."""

    def secret_report(target: str) -> dict:  # the shape of trivy's secret results (schema 2)
        finding = {"RuleID": "private-key", "Category": "AsymmetricPrivateKey", "Severity": "HIGH", "Title": "x"}
        return {"SchemaVersion": 2, "Results": [{"Target": target, "Class": "secret", "Secrets": [finding]}]}

    waivers, problems = trivy.load_waivers(today=TODAY)
    assert problems == []
    tornado = "opt/venv/lib/python3.11/site-packages/tornado/test/test.key"
    assert trivy.gate(secret_report(tornado), waivers).passed
    assert not trivy.gate(secret_report("home/bentoml/bento/src/key.pem"), waivers).passed
