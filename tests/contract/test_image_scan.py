"""The scan gate on real images: the built image passes every offline check; a planted one fails each rule."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ci.gate import scan

pytestmark = pytest.mark.container

OFFLINE = {
    "secrets: image layers",
    "secrets: Bento",
    "SBOM",
    "policy: base_pinned",
    "policy: healthcheck",
    "policy: licenses",
    "policy: no_add_from_url",
    "policy: no_build_tools",
    "policy: non_root_user",
    "policy: oci_labels",
    "trivy waivers",
}


@pytest.fixture(scope="module", name="scanned")
def fixture_scanned(image, tmp_path_factory) -> tuple[scan.Verdict, Path]:
    """The scan of the image under test (IMAGE_VARIANT), reports in a temporary directory."""
    out = tmp_path_factory.mktemp("scan")
    return scan.scan(scan.target_for(image["variant"]), allow_missing_trivy=True, out_dir=out), out


def test_every_offline_check_runs_and_passes_on_the_built_image(scanned):
    """Secrets, SBOM, every policy and the waiver file: all ran, all passed."""
    verdict, _ = scanned
    checks = {c.name: c for c in verdict.checks}
    assert set(checks) == OFFLINE | {scan.TRIVY_CHECK}
    problems = {n: (c.status, c.findings[:3], c.detail) for n, c in checks.items() if n in OFFLINE and not c.passed}
    assert problems == {}


def test_trivy_is_reported_as_it_ran(scanned):
    """trivy either ran (and its report was gated) or is NOT RUN with the reason: never passed without running."""
    verdict, out = scanned
    (trivy_check,) = [c for c in verdict.checks if c.name == scan.TRIVY_CHECK]
    if trivy_check.ran:
        assert (out / "trivy.json").is_file()
        assert (out / "trivy.sarif").is_file()
    else:
        assert trivy_check.passed is None
        assert "trivy" in trivy_check.detail
        assert not scan.Verdict(verdict.checks).passed  # without --allow-missing-trivy the gate is shut


def test_the_sbom_lists_debian_and_python_packages_with_versions(scanned, image):
    """CycloneDX and SPDX name the Debian base's python3 and the image's ONNX Runtime, with versions."""
    _, out = scanned
    bom = json.loads((out / "sbom.cdx.json").read_text())
    versions = {(c["purl"].split("/")[0], c["name"]): c["version"] for c in bom["components"] if "purl" in c}
    assert versions[("pkg:deb", "python3.11")]
    runtime = "onnxruntime" if image["variant"] == "cpu" else "onnxruntime-gpu"
    assert versions[("pkg:pypi", runtime)] == "1.31.1"
    spdx = json.loads((out / "sbom.spdx.json").read_text())
    assert any(p.get("name") == runtime and p.get("versionInfo") == "1.31.1" for p in spdx["packages"])


PLANTED_DOCKERFILE = """\
FROM python:3.11-slim
ADD https://example.invalid/model.tgz /opt/
COPY planted/ /
"""
GPL_METADATA = "Metadata-Version: 2.1\nName: gplthing\nVersion: 1.0\nLicense: GPL-3.0-only\n"


@pytest.fixture(name="planted")
def fixture_planted(docker, image, tmp_path):
    """A small image on the project's base with one violation per rule, and a Bento with a .env."""
    files = {
        "planted/usr/bin/gcc": "#!/bin/sh\n",
        "planted/root/.cache/pip/http-v2/0/entry": "cached\n",
        "planted/app/.env": "DEBUG=1\n",
        "planted/app/settings.py": "AWS_KEY = '" + "AKIA" + "Z7Q3WXR5TPL2MN8K'\n",
        "planted/usr/lib/python3/dist-packages/gplthing-1.0.dist-info/METADATA": GPL_METADATA,
        "planted/usr/lib/python3/dist-packages/gplthing-1.0.dist-info/RECORD": "",
        "bento/src/.env": "TOKEN=1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    # Built from the local base (no pull, no network); the Dockerfile the policies read is the planted one.
    (tmp_path / "Dockerfile.build").write_text(f"FROM {image['base']}\nCOPY planted/ /\n")
    tag = "ml-model-image/breast-cancer-planted:scan-test"
    subprocess.run(
        [docker, "build", "--network", "none", "-q", "-f", "Dockerfile.build", "-t", tag, "."],
        cwd=tmp_path,
        env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
        check=True,
        capture_output=True,
    )
    (tmp_path / "Dockerfile").write_text(PLANTED_DOCKERFILE)
    image_id = json.loads(subprocess.run([docker, "image", "inspect", tag], capture_output=True, check=True).stdout)[0]
    yield scan.Target("planted", tag, image_id["Id"], tmp_path / "Dockerfile", tmp_path / "bento", {}, ())
    subprocess.run([docker, "rmi", "-f", tag], capture_output=True)


def test_planted_violations_fail_the_gate_naming_each_rule(planted, tmp_path):
    """Root user, no health check, ADD from a URL, unpinned base, no labels, a compiler, a pip cache,
    a GPL package, a key in a layer and a .env in the Bento: each fails its own check, named."""
    verdict = scan.scan(planted, allow_missing_trivy=True, out_dir=tmp_path / "out")
    failed = {c.name: c.findings for c in verdict.checks if c.passed is False}
    assert not verdict.passed
    for rule in ("non_root_user", "healthcheck", "no_add_from_url", "base_pinned", "oci_labels", "no_build_tools"):
        assert failed.get(f"policy: {rule}"), rule
        assert all(f.startswith(f"{rule}: ") for f in failed[f"policy: {rule}"])
    assert any("/usr/bin/gcc" in f for f in failed["policy: no_build_tools"])
    assert any(".cache/pip" in f for f in failed["policy: no_build_tools"])
    assert any("gplthing 1.0" in f for f in failed["policy: licenses"])
    assert {f.split(":")[0] for f in failed["secrets: image layers"]} >= {"aws-access-key-id", "env-file"}
    assert [f.split(":")[0] for f in failed["secrets: Bento"]] == ["env-file"]
    assert "gate: FAILED" in scan.summary(planted, verdict)
