"""Sign a pushed image by digest (cosign, keyless), attest its SBOM, and verify both: for CI and for you.

In GitHub Actions, after `nox -s push` (build/push-<variant>.json names the digest) the push job:

    python ci/runner/signing.py outputs --variant cpu   # image and digest, as step outputs for attest-build-provenance
    python ci/runner/signing.py sign --variant cpu      # cosign sign + cosign attest (CycloneDX SBOM from nox -s scan)
    python ci/runner/signing.py verify --variant cpu    # cosign verify, verify-attestation, gh attestation verify

Signing is keyless: cosign exchanges the job's OIDC token (`id-token: write`) for a short-lived
Sigstore certificate that names this workflow, so there is no key to keep or leak, and the
signature and the attestations are logged in Sigstore's public transparency log. The registry
credentials (REGISTRY_USER, REGISTRY_PASSWORD) go to a temporary DOCKER_CONFIG, deleted after.

To verify an image you pulled, with cosign and the GitHub CLI installed:

    python3 ci/runner/signing.py verify --image ghcr.io/OWNER/ml-model-image/breast-cancer@sha256:... --repo OWNER/REPO

which runs (and prints) the cosign and gh commands docs/registry.md lists. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

if not __package__:  # run as `python ci/runner/signing.py`: the checkout is not on sys.path (as pip's __main__ does)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ci.publish.login import LoginError, temporary_login
from ci.records import BUILD_DIR, UserError, load_push, push_path

ISSUER = "https://token.actions.githubusercontent.com"
WORKFLOW = ".github/workflows/ci.yml"
SBOM_TYPE = "cyclonedx"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class SigningError(UserError):
    """Something to fix before signing or verifying; the message says what."""


def pushed_image(variant: str, build_dir: Path | None = None) -> tuple[str, str]:
    """(repository, digest) that `nox -s push` recorded for the variant."""
    build_dir = build_dir or BUILD_DIR
    record = load_push(variant, build_dir)
    repository, digest = record.get("repository", ""), record.get("digest", "")
    if not repository or not DIGEST.fullmatch(digest):
        raise SigningError(f"{push_path(variant, build_dir)} names no repository and sha256 digest: push again.")
    return repository, digest


def identity_regexp(repo: str) -> str:
    """The signing identity of this repository's CI workflow, on main or on a v* tag."""
    return rf"^https://github\.com/{re.escape(repo)}/\.github/workflows/ci\.yml@refs/(heads/main|tags/v.+)$"


def identity_flags(repo: str, workflow_ref: str | None = None) -> list[str]:
    """cosign's certificate checks: the exact workflow run's ref when known (in CI), else main or a tag."""
    if workflow_ref:  # GITHUB_WORKFLOW_REF: owner/repo/.github/workflows/ci.yml@refs/heads/main
        identity = ["--certificate-identity", f"https://github.com/{workflow_ref}"]
    else:
        identity = ["--certificate-identity-regexp", identity_regexp(repo)]
    return [*identity, "--certificate-oidc-issuer", ISSUER]


def sign_commands(image: str, sbom: Path) -> list[list[str]]:
    """cosign sign (the digest) and cosign attest (the CycloneDX SBOM as an in-toto predicate)."""
    return [
        ["cosign", "sign", "--yes", image],
        ["cosign", "attest", "--yes", "--type", SBOM_TYPE, "--predicate", str(sbom), image],
    ]


def verify_commands(image: str, repo: str, workflow_ref: str | None = None) -> list[list[str]]:
    """cosign verify, cosign verify-attestation (SBOM) and gh attestation verify (SLSA provenance)."""
    flags = identity_flags(repo, workflow_ref)
    return [
        ["cosign", "verify", *flags, image],
        ["cosign", "verify-attestation", "--type", SBOM_TYPE, *flags, image],
        ["gh", "attestation", "verify", f"oci://{image}", "--repo", repo, "--signer-workflow", f"{repo}/{WORKFLOW}"],
    ]


@contextmanager
def registry_login(image: str, environ: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """Environment with REGISTRY_USER logged in to the image's registry in a temporary DOCKER_CONFIG."""
    user, password = environ.get("REGISTRY_USER"), environ.get("REGISTRY_PASSWORD")
    if not user or not password:
        yield {}  # the caller's own docker login (or a public image)
        return
    host = image.split("/", 1)[0]
    try:
        with temporary_login("cosign", host, user, password) as env:
            yield env
    except LoginError as exc:  # raised only by the login itself, before the block runs
        raise SigningError(str(exc)) from exc


def run_all(commands: list[list[str]], env: Mapping[str, str]) -> None:
    """Run each command, printing it first; stop at the first failure."""
    for cmd in commands:
        print(f"==> {' '.join(cmd)}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise SigningError(f"`{' '.join(cmd[:3])} ...` failed (exit {proc.returncode}); see its output above.")


def github_output(values: Mapping[str, str], environ: Mapping[str, str]) -> None:
    """Write step outputs ($GITHUB_OUTPUT), or print them outside GitHub Actions."""
    lines = "".join(f"{key}={value}\n" for key, value in values.items())
    target = environ.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(lines)
    print(lines, end="")


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """`python ci/runner/signing.py {outputs,sign,verify} --variant V` (CI); `verify --image REF@DIGEST --repo O/R`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("outputs", "sign", "verify"))
    parser.add_argument("--variant", help="read the pushed digest from build/push-<variant>.json")
    parser.add_argument("--image", help="verify this image (repository@sha256:...) instead")
    parser.add_argument("--repo", default=environ.get("GITHUB_REPOSITORY"), help="owner/repo that built it")
    args = parser.parse_args(argv)
    try:
        if args.image:
            if not DIGEST.search(args.image.rsplit("@", 1)[-1]):
                raise SigningError(f"{args.image} is not pinned by digest: use repository@sha256:<digest>.")
            image = args.image
        elif args.variant:
            repository, digest = pushed_image(args.variant)
            image = f"{repository}@{digest}"
        else:
            raise SigningError("say which image: --variant (after nox -s push) or --image repository@sha256:...")
        if args.action == "outputs":
            repository, digest = image.rsplit("@", 1)
            github_output({"image": repository, "digest": digest}, environ)
            return 0
        if not args.repo:
            raise SigningError("--repo owner/repo is required outside GitHub Actions.")
        if args.action == "sign":
            sbom = BUILD_DIR / "scan" / (args.variant or "") / "sbom.cdx.json"
            if not args.variant or not sbom.is_file():
                raise SigningError(f"{sbom} is missing: `nox -s 'scan(<variant>)'` writes the SBOM to attest.")
            commands = sign_commands(image, sbom)
        else:
            commands = verify_commands(image, args.repo, environ.get("GITHUB_WORKFLOW_REF"))
        with registry_login(image, environ) as env:
            run_all(commands, env)
    except UserError as exc:  # SigningError, or a missing or unreadable push record
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.action}: {image} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
