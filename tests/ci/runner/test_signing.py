"""Signing and verification commands: by digest, keyless, pinned to this repository's CI workflow."""

from __future__ import annotations

import json
import re

import pytest

from ci.runner import signing

DIGEST = "sha256:" + "0a" * 32
IMAGE = f"ghcr.io/you/ml-model-image/breast-cancer@{DIGEST}"


@pytest.fixture(name="build_dir")
def fixture_build_dir(tmp_path, monkeypatch):
    """A build directory with a push record and the scan's SBOM for cpu."""
    monkeypatch.setattr(signing, "BUILD_DIR", tmp_path)
    record = {"repository": "ghcr.io/you/ml-model-image/breast-cancer", "digest": DIGEST}
    (tmp_path / "push-cpu.json").write_text(json.dumps(record))
    (tmp_path / "scan" / "cpu").mkdir(parents=True)
    (tmp_path / "scan" / "cpu" / "sbom.cdx.json").write_text("{}")
    return tmp_path


def test_the_pushed_digest_is_what_gets_signed(build_dir):
    """The image is named by the digest push recorded, never by a tag."""
    assert signing.pushed_image("cpu", build_dir) == ("ghcr.io/you/ml-model-image/breast-cancer", DIGEST)
    commands = signing.sign_commands(IMAGE, build_dir / "scan/cpu/sbom.cdx.json")
    assert commands[0] == ["cosign", "sign", "--yes", IMAGE]
    assert commands[1][:5] == ["cosign", "attest", "--yes", "--type", "cyclonedx"]
    assert all(cmd[-1] == IMAGE for cmd in commands)


def test_outputs_give_attest_build_provenance_its_subject(build_dir, tmp_path):
    """`outputs` writes image and digest for actions/attest-build-provenance's subject-name and subject-digest."""
    out = tmp_path / "github-output"
    assert signing.main(["outputs", "--variant", "cpu"], {"GITHUB_OUTPUT": str(out)}) == 0
    assert out.read_text() == f"image=ghcr.io/you/ml-model-image/breast-cancer\ndigest={DIGEST}\n"


def test_ci_verifies_the_exact_workflow_ref():
    """In CI the certificate must name this very workflow and ref, and the issuer must be GitHub Actions."""
    ref = "you/repo/.github/workflows/ci.yml@refs/tags/v1.2.0"
    verify, attestation, provenance = signing.verify_commands(IMAGE, "you/repo", ref)
    assert verify[:2] == ["cosign", "verify"]
    assert verify[verify.index("--certificate-identity") + 1] == f"https://github.com/{ref}"
    assert verify[verify.index("--certificate-oidc-issuer") + 1] == "https://token.actions.githubusercontent.com"
    assert attestation[:4] == ["cosign", "verify-attestation", "--type", "cyclonedx"]
    assert provenance[:4] == ["gh", "attestation", "verify", f"oci://{IMAGE}"]
    assert provenance[provenance.index("--signer-workflow") + 1] == "you/repo/.github/workflows/ci.yml"


@pytest.mark.parametrize(
    ("identity", "accepted"),
    [
        ("https://github.com/you/repo/.github/workflows/ci.yml@refs/heads/main", True),
        ("https://github.com/you/repo/.github/workflows/ci.yml@refs/tags/v1.2.0", True),
        ("https://github.com/you/repo/.github/workflows/ci.yml@refs/heads/feature", False),
        ("https://github.com/you/repo/.github/workflows/other.yml@refs/heads/main", False),
        ("https://github.com/someone/repo/.github/workflows/ci.yml@refs/heads/main", False),
        ("https://github.com/you/repoX/.github/workflows/ci.yml@refs/heads/main", False),
    ],
)
def test_a_pulled_image_must_come_from_main_or_a_tag_of_this_repository(identity, accepted):
    """Outside CI the identity is a regexp: this repository's ci.yml, on main or a v* tag, nothing else."""
    assert bool(re.fullmatch(signing.identity_regexp("you/repo"), identity)) is accepted


def test_an_image_by_tag_is_refused(capsys):
    """Verification takes a digest: a tag can move after you verified it."""
    assert signing.main(["verify", "--image", "ghcr.io/you/img:latest", "--repo", "you/repo"], {}) == 1
    assert "not pinned by digest" in capsys.readouterr().err


def test_signing_needs_the_scan_sbom(build_dir, capsys):
    """No SBOM from nox -s scan, nothing to attest: sign stops before calling cosign."""
    (build_dir / "scan/cpu/sbom.cdx.json").unlink()
    assert signing.main(["sign", "--variant", "cpu", "--repo", "you/repo"], {}) == 1
    assert "writes the SBOM to attest" in capsys.readouterr().err


def test_nothing_pushed_is_an_error(tmp_path, monkeypatch, capsys):
    """Without build/push-<variant>.json there is no digest to sign."""
    monkeypatch.setattr(signing, "BUILD_DIR", tmp_path)
    assert signing.main(["outputs", "--variant", "cuda"], {}) == 1
    assert "run `nox -s push -- --variant cuda` first" in capsys.readouterr().err
