"""Run trivy on an image archive, read its report, and decide the gate, with the project's waivers.

trivy comes from a `trivy` binary on PATH or, failing that, from the official image pinned by
digest (TRIVY_IMAGE), which is pulled when the engine lacks it. Neither trivy nor its
vulnerability database can be downloaded on this project's own machines: there the scan says so
and does not pass, unless the user asks to go on without it (`--allow-missing-trivy`).

The gate, on trivy's JSON report (schema 2), after waivers:
- vulnerabilities: HIGH or CRITICAL with a fixed version (an update exists, so take it);
- misconfigurations: HIGH or CRITICAL that FAIL;
- secrets: HIGH or CRITICAL.
Unfixed vulnerabilities are counted and shown, never gating: nothing can be done but waiting.

Waivers live in policies/.trivyignore.yaml, trivy's own YAML ignore format, so trivy honours them
too (and the SARIF sent to code scanning leaves them out). The project adds one rule that trivy
does not enforce: every waiver has a `statement` and an `expired_at`; an expired or unexplained
waiver fails the gate, whether or not trivy itself could run.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from ci.project import CACHE_DIR, ROOT, UserError

TRIVY_VERSION = "0.69.3"
# aquasec/trivy:0.69.3, multi-arch index digest. 0.69.4 was a malicious release (March 2026
# supply-chain attack on trivy's release pipeline); 0.69.3 predates it.
TRIVY_IMAGE = "aquasec/trivy@sha256:bcc376de8d77cfe086a917230e818dc9f8528e3c852f7b1aff648949b6258d1c"
WAIVERS = ROOT / "policies" / ".trivyignore.yaml"
TRIVY_CACHE = CACHE_DIR / "trivy"  # the vulnerability database, reused between scans
SCANNERS = "vuln,secret,misconfig"
GATING = frozenset({"HIGH", "CRITICAL"})
KINDS = {  # ignore-file section -> report key
    "vulnerabilities": "Vulnerabilities",
    "misconfigurations": "Misconfigurations",
    "secrets": "Secrets",
    "licenses": "Licenses",
}


class TrivyUnavailable(Exception):
    """trivy cannot run here; the message says why and what to do."""


@dataclass(frozen=True)
class Finding:
    """One finding of a trivy report, in the terms the gate and the summary use."""

    kind: str  # vulnerabilities, misconfigurations, secrets, licenses
    id: str
    severity: str
    target: str
    title: str = ""
    package: str = ""
    installed: str = ""
    fixed: str = ""
    purl: str = ""
    path: str = ""
    status: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def gating(self) -> bool:
        """Whether this finding, unwaived, fails the gate (see the module docstring)."""
        if self.severity not in GATING:
            return False
        if self.kind == "vulnerabilities":
            return bool(self.fixed)
        if self.kind == "misconfigurations":
            return self.status.upper() == "FAIL"
        return self.kind == "secrets"

    def text(self) -> str:
        """One line: severity, id, where, and the way out."""
        if self.kind == "vulnerabilities":
            fix = f" -> {self.fixed}" if self.fixed else " (no fix yet)"
            return f"{self.severity} {self.id} {self.package} {self.installed}{fix} [{self.target}]"
        return f"{self.severity} {self.id} {self.title} [{self.path or self.target}]"


@dataclass(frozen=True)
class Waiver:
    """One entry of the ignore file."""

    kind: str
    id: str
    statement: str = ""
    expired_at: date | None = None
    paths: tuple[str, ...] = ()
    purls: tuple[str, ...] = ()

    def matches(self, finding: Finding) -> bool:
        """Same kind and ID (or alias), and inside its `purls` and `paths`, as trivy matches them."""
        if self.kind != finding.kind or self.id not in (finding.id, *finding.aliases):
            return False
        if self.purls and not any(_purl_matches(p, finding.purl) for p in self.purls):
            return False
        places = [p for p in (finding.path, finding.target) if p]
        return not self.paths or any(fnmatch.fnmatchcase(place, pat) for pat in self.paths for place in places)


@dataclass
class Gate:
    """The gate's decision over one report."""

    blocking: list[Finding] = field(default_factory=list)
    waived: list[tuple[Finding, Waiver]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # `<kind> <SEVERITY>` -> findings
    unfixed_gating_severity: int = 0
    suppressed_by_trivy: int = 0

    @property
    def passed(self) -> bool:
        """True when no finding blocks."""
        return not self.blocking


def _purl_matches(pattern: str, purl: str) -> bool:
    """A waiver's purl names a package: without a version it matches every version."""
    if not purl:
        return False
    if "@" in pattern:
        return purl == pattern or purl.startswith(f"{pattern}?")
    return purl.split("@", 1)[0].split("?", 1)[0].lower() == pattern.split("?", 1)[0].lower()


def parse_report(report: dict) -> list[Finding]:
    """Every finding of a trivy JSON report (schema version 2)."""
    if report.get("SchemaVersion") != 2:
        raise UserError(
            f"trivy report schema {report.get('SchemaVersion')!r} is not 2: update ci/gate/trivy.py for it."
        )
    findings = []
    for result in report.get("Results") or []:
        target = result.get("Target", "")
        for vuln in result.get("Vulnerabilities") or []:
            findings.append(
                Finding(
                    "vulnerabilities",
                    vuln["VulnerabilityID"],
                    vuln.get("Severity", "UNKNOWN"),
                    target,
                    title=vuln.get("Title", ""),
                    package=vuln.get("PkgName", ""),
                    installed=vuln.get("InstalledVersion", ""),
                    fixed=vuln.get("FixedVersion", ""),
                    purl=(vuln.get("PkgIdentifier") or {}).get("PURL", ""),
                    path=vuln.get("PkgPath", ""),
                    status=vuln.get("Status", ""),
                    aliases=tuple(vuln.get("VendorIDs") or ()),
                )
            )
        for misconf in result.get("Misconfigurations") or []:
            findings.append(
                Finding(
                    "misconfigurations",
                    misconf.get("ID", ""),
                    misconf.get("Severity", "UNKNOWN"),
                    target,
                    title=misconf.get("Title", ""),
                    status=misconf.get("Status", ""),
                    aliases=tuple(x for x in (misconf.get("AVDID"), f"AVD-{misconf.get('ID', '')}") if x),
                )
            )
        for secret in result.get("Secrets") or []:
            findings.append(
                Finding(
                    "secrets",
                    secret.get("RuleID", ""),
                    secret.get("Severity", "UNKNOWN"),
                    target,
                    title=secret.get("Title", ""),
                    path=target,
                )
            )
        for lic in result.get("Licenses") or []:
            findings.append(
                Finding(
                    "licenses",
                    lic.get("Name", ""),
                    lic.get("Severity", "UNKNOWN"),
                    target,
                    title=f"{lic.get('PkgName', '')} {lic.get('Name', '')}".strip(),
                    path=lic.get("FilePath", ""),
                )
            )
    return findings


def _date(value: object) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def load_waivers(path: Path = WAIVERS, today: date | None = None) -> tuple[list[Waiver], list[str]]:
    """(waivers in force, problems): an entry without statement or expiry, or expired, is a problem.

    Only waivers in force are applied: an expired one waives nothing, like in trivy.
    """
    today = today or date.today()
    if not path.is_file():
        return [], []
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        return [], [f"{path.name} is not valid YAML: {exc}"]
    if not isinstance(data, dict):
        return [], [f"{path.name} must map vulnerabilities/misconfigurations/secrets/licenses to lists"]
    waivers, problems = [], []
    for kind, entries in data.items():
        if kind not in KINDS:
            problems.append(f"{path.name}: unknown section `{kind}` (trivy reads {', '.join(KINDS)})")
            continue
        for entry in entries or []:
            entry = entry if isinstance(entry, dict) else {"id": str(entry)}
            ident = str(entry.get("id") or "").strip()
            where = f"{path.name}: {kind} {ident or '(no id)'}"
            statement = str(entry.get("statement") or "").strip()
            try:
                expires = _date(entry.get("expired_at"))
            except ValueError:
                problems.append(f"{where}: expired_at {entry.get('expired_at')!r} is not a date (yyyy-mm-dd)")
                continue
            if not ident:
                problems.append(f"{where}: no `id`")
            if not statement:
                problems.append(f"{where}: no `statement`: say why the finding is accepted, and who decided")
            if expires is None:
                problems.append(f"{where}: no `expired_at`: every waiver ends (yyyy-mm-dd), then is reviewed")
            elif expires < today:
                problems.append(f"{where}: expired on {expires.isoformat()}: review it, then renew or remove it")
            if ident and statement and expires and expires >= today:
                waivers.append(
                    Waiver(
                        kind,
                        ident,
                        statement,
                        expires,
                        tuple(str(p) for p in entry.get("paths") or ()),
                        tuple(str(p) for p in entry.get("purls") or ()),
                    )
                )
    return waivers, problems


def gate(report: dict, waivers: list[Waiver]) -> Gate:
    """Apply waivers and the gating rule to one report."""
    result = Gate()
    for finding in parse_report(report):
        key = f"{finding.kind} {finding.severity}"
        result.counts[key] = result.counts.get(key, 0) + 1
        if finding.kind == "vulnerabilities" and finding.severity in GATING and not finding.fixed:
            result.unfixed_gating_severity += 1
        if not finding.gating:
            continue
        waiver = next((w for w in waivers if w.matches(finding)), None)
        if waiver:
            result.waived.append((finding, waiver))
        else:
            result.blocking.append(finding)
    result.suppressed_by_trivy = len(report.get("ExperimentalModifiedFindings") or [])
    return result


@dataclass(frozen=True)
class Runner:
    """How trivy runs here: a binary, or the pinned image through docker."""

    kind: str  # "binary" or "container"
    command: str  # the binary's path, or the docker CLI
    version: str

    def describe(self) -> str:
        """`trivy 0.69.3 (/usr/local/bin/trivy)` or `trivy 0.69.3 (container aquasec/trivy@sha256:...)`."""
        where = self.command if self.kind == "binary" else f"container {TRIVY_IMAGE}"
        return f"trivy {self.version} ({where})"


def find_trivy(docker: str | None) -> Runner:
    """A trivy binary on PATH, else the pinned image (pulled if missing); TrivyUnavailable says why not."""
    if binary := shutil.which("trivy"):
        out = subprocess.run([binary, "--version"], capture_output=True, text=True)
        version = next((line.split()[-1] for line in out.stdout.splitlines() if line.startswith("Version")), "?")
        return Runner("binary", binary, version)
    if docker is None:
        raise TrivyUnavailable("trivy is not on PATH and no Docker engine is available to run its image")
    present = subprocess.run([docker, "image", "inspect", TRIVY_IMAGE], capture_output=True).returncode == 0
    if not present:
        pull = subprocess.run([docker, "pull", "-q", TRIVY_IMAGE], capture_output=True, text=True)
        if pull.returncode != 0:
            reason = (pull.stderr.strip().splitlines() or ["no reason given"])[-1]
            raise TrivyUnavailable(
                f"trivy is not on PATH, and its image {TRIVY_IMAGE} (trivy {TRIVY_VERSION}) is not in the "
                f"Docker engine and cannot be pulled here ({reason})"
            )
    return Runner("container", docker, TRIVY_VERSION)


def _command(runner: Runner, args: list[str], mounts: dict[Path, str]) -> list[str]:
    """The full command: the binary with host paths, or `docker run` with the paths mounted."""
    if runner.kind == "binary":
        return [runner.command, *args]
    cmd = [runner.command, "run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp"]
    for host, inside in mounts.items():
        cmd += [
            "--mount",
            f"type=bind,source={host.resolve()},target={inside}{',readonly' if inside.startswith('/in') else ''}",
        ]
    return [*cmd, TRIVY_IMAGE, *args]


def run_trivy(runner: Runner, archive: Path, out_dir: Path, waivers: Path = WAIVERS) -> tuple[Path, Path]:
    """Scan the `docker save` archive; write trivy.json and trivy.sarif into out_dir; return both."""
    out_dir.mkdir(parents=True, exist_ok=True)
    TRIVY_CACHE.mkdir(parents=True, exist_ok=True)
    container = runner.kind == "container"
    at = {  # where each file is, as trivy sees it
        "archive": "/in/image.tar" if container else str(archive),
        "waivers": "/in/.trivyignore.yaml" if container else str(waivers),
        "out": "/out" if container else str(out_dir),
        "cache": "/cache" if container else str(TRIVY_CACHE),
    }
    mounts = {archive: at["archive"], waivers: at["waivers"], out_dir: at["out"], TRIVY_CACHE: at["cache"]}
    scan = [
        "image",
        "--input",
        at["archive"],
        "--scanners",
        SCANNERS,
        # misconfig in --scanners reads config files inside the image; this also checks the
        # image's own config (user, health check, ...), the part that is ours.
        "--image-config-scanners",
        "misconfig",
        "--ignorefile",
        at["waivers"],
        "--show-suppressed",
        "--cache-dir",
        at["cache"],
        "--timeout",
        "30m",
        "--format",
        "json",
        "--output",
        f"{at['out']}/trivy.json",
    ]
    convert = ["convert", "--format", "sarif", "--output", f"{at['out']}/trivy.sarif", f"{at['out']}/trivy.json"]
    for args in (scan, convert):
        proc = subprocess.run(_command(runner, args, mounts), capture_output=True, text=True)
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-4:])
            raise TrivyUnavailable(f"`trivy {args[0]}` failed (exit {proc.returncode}): {tail}")
    return out_dir / "trivy.json", out_dir / "trivy.sarif"


def sarif_results(path: Path) -> int:
    """How many results a SARIF file carries (what code scanning will show)."""
    try:
        sarif = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the SARIF report {path}: {exc}") from exc
    if sarif.get("version") != "2.1.0":
        raise UserError(f"{path} is SARIF {sarif.get('version')!r}, not 2.1.0: code scanning would refuse it.")
    return sum(len(run.get("results") or []) for run in sarif.get("runs") or [])


def load_report(path: Path) -> dict:
    """A trivy JSON report from disk."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the trivy report {path}: {exc}") from exc
