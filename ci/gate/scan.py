"""The scan and policy gate: may this image be pushed? Every check runs, and says whether it ran.

For one built variant (build/image-<variant>.json) it exports the image once (`docker save`) and
runs, each as a check in the summary:

    secrets: image layers      every file of every layer (ci/gate/secrets.py)
    secrets: Bento             build/bento, what the image was built from (not for the tracking
                               server, which has no Bento)
    SBOM                       syft, CycloneDX + SPDX (ci/gate/sbom.py)
    policy: <rule>             each policies/<rule>.rego over the Dockerfile, image config, files
                               and SBOM (ci/gate/policy.py)
    trivy waivers              policies/.trivyignore.yaml: every waiver explained and unexpired
    vulnerabilities: trivy     trivy's vulnerability, secret and misconfiguration scanners (ci/gate/trivy.py)

A check that could not run is reported as not run, never as passed, and the gate fails, with one
exception the user must ask for: `--allow-missing-trivy` lets the gate pass without trivy (which
cannot be downloaded on this project's own machines); the summary then says so in capitals.

Writes build/scan-<variant>.json (the verdict, for `nox -s push` and the job summary; ci/records.py
owns it and the gate check push runs on it) and the reports under build/scan/<variant>/:
sbom.cdx.json, sbom.spdx.json, secrets.json, policy.json, trivy.json and trivy.sarif (when trivy
ran). Exit code 1 when the gate fails.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ci import records
from ci.engine import ensure_engine
from ci.gate import policy, sbom, secrets, trivy
from ci.image import build as build_image
from ci.image.oci import rfc3339
from ci.project import (
    BENTO_DIR,
    CACHE_DIR,
    ROOT,
    UserError,
    is_base_ref,
    main_guard,
    run,
    say,
    section,
    step,
    table,
)

TRIVY_CHECK = "vulnerabilities: trivy"
INPUT_REFERENCE = re.compile(r"\binput\.(\w+)")


@dataclass
class Check:
    """One check of the gate. `passed` is None exactly when the check did not run."""

    name: str
    ran: bool
    passed: bool | None
    findings: list[str] = field(default_factory=list)
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.ran and self.passed is not None:
            raise ValueError(f"check {self.name!r} did not run, so it cannot have passed or failed")
        if self.ran and self.passed is None:
            raise ValueError(f"check {self.name!r} ran, so it passed or failed")

    @classmethod
    def result(cls, name: str, findings: list[str], detail: str = "") -> Check:
        """A check that ran: passed when it found nothing."""
        return cls(name, True, not findings, list(findings), detail)

    @classmethod
    def not_run(cls, name: str, why: str) -> Check:
        """A check that could not run, and why."""
        return cls(name, False, None, [], why)

    @property
    def status(self) -> str:
        """passed, FAILED or NOT RUN."""
        return "NOT RUN" if not self.ran else "passed" if self.passed else "FAILED"


@dataclass(frozen=True)
class Target:
    """What is scanned: one built image and what it was built from."""

    variant: str
    ref: str
    image_id: str
    dockerfile: Path
    bento_dir: Path | None  # None for an image without a Bento (the tracking server): no Bento check
    build_args: dict[str, str]
    local_bases: tuple[str, ...]


@dataclass
class Verdict:
    """The gate's decision over every check."""

    checks: list[Check]
    allow_missing_trivy: bool = False

    @property
    def without_vulnerability_scan(self) -> bool:
        """True when trivy did not run and the user allowed it."""
        return any(c.name == TRIVY_CHECK and not c.ran for c in self.checks)

    @property
    def blocking(self) -> list[Check]:
        """The checks that keep the gate shut: failed ones, and ones that did not run (trivy aside, if allowed)."""
        return [
            c
            for c in self.checks
            if c.passed is False or (not c.ran and not (c.name == TRIVY_CHECK and self.allow_missing_trivy))
        ]

    @property
    def passed(self) -> bool:
        """True when no check blocks (and there is at least one check)."""
        return bool(self.checks) and not self.blocking


def report_dir(variant: str) -> Path:
    """Where the reports of `variant` go."""
    return records.BUILD_DIR / "scan" / variant


def target_for(variant: str) -> Target:
    """The scan target of a built variant: the Dockerfile and build arguments its build recorded."""
    record = records.load_image(variant)
    image = section("image")
    if "build_args" not in record or "dockerfile" not in record:
        raise UserError(f"the {variant} image's record predates build arguments in records: run `nox -s build`.")
    # ci/image/base.py names the base it builds from Debian packages after its rootfs tarball's
    # sha256: that is the one unpinned-looking FROM the base_pinned policy accepts.
    base = record.get("base", "")
    local = (base,) if is_base_ref(base, image["repository"]) else ()
    return Target(
        variant=variant,
        ref=record["ref"],
        image_id=record["id"],
        dockerfile=ROOT / record["dockerfile"],
        bento_dir=BENTO_DIR if "bento" in record else None,
        build_args=record["build_args"],
        local_bases=local,
    )


def inspect(docker: str, target: Target) -> dict:
    """`docker image inspect` of the target, checked to be the recorded image."""
    proc = subprocess.run([docker, "image", "inspect", target.ref], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"{target.ref} is not in the Docker engine: run `nox -s 'build({target.variant})'` first.")
    config = json.loads(proc.stdout)[0]
    if config["Id"] != target.image_id:
        raise UserError(
            f"{target.ref} is {config['Id']}, not the recorded {target.image_id}: "
            f"run `nox -s 'build({target.variant})'` again."
        )
    return config


def secrets_checks(archive: Path, bento_dir: Path | None, out_dir: Path) -> tuple[list[Check], list[dict] | None]:
    """The two secret checks, and the image's file listing for the policies (None if unreadable)."""
    allow = secrets.load_allowlist()
    checks, listing, scans = [], None, []
    try:
        with step("secret scan of every image layer"):
            image_scan, files = secrets.scan_image_archive(archive, allow)
        scans.append(image_scan)
        listing = [{"path": e["path"], "type": e["type"], "size": e["size"]} for e in files.listing()]
        checks.append(
            Check.result(
                "secrets: image layers", [f.text() for f in image_scan.findings], secrets.summarize(image_scan)
            )
        )
    except (OSError, KeyError, ValueError, EOFError) as exc:
        checks.append(Check.not_run("secrets: image layers", f"cannot read the image archive: {exc}"))
    if bento_dir is None:
        pass  # an image built without a Bento (the tracking server): its layers are all there is
    elif bento_dir.is_dir():
        bento_scan = secrets.scan_directory(bento_dir, "bento", allow)
        scans.append(bento_scan)
        checks.append(
            Check.result("secrets: Bento", [f.text() for f in bento_scan.findings], secrets.summarize(bento_scan))
        )
    else:
        checks.append(Check.not_run("secrets: Bento", f"{bento_dir} is missing: run `nox -s build` first"))
    report = {
        "image": scans[0].to_json() if listing is not None else None,
        "bento": scans[-1].to_json() if bento_dir is not None and bento_dir.is_dir() else None,
        "unused_allowlist_entries": [asdict(e) for e in secrets.unused_entries(allow, scans)],
    }
    (out_dir / "secrets.json").write_text(json.dumps(report, indent=2) + "\n")
    return checks, listing


def sbom_check(archive: Path, out_dir: Path) -> tuple[Check, list[dict] | None]:
    """The SBOM check, and the packages for the policies (None if there is no usable SBOM)."""
    try:
        with step("SBOM (syft: CycloneDX and SPDX)"):
            cdx, spdx, version = sbom.make_sbom(archive, out_dir)
    except UserError as exc:
        return Check.not_run("SBOM", str(exc)), None
    summary = sbom.summarize(cdx, spdx, f"syft {version}")
    detail = f"{summary.text()} (syft {version}): {cdx.name}, {spdx.name}"
    packages = policy.packages_from_cyclonedx(json.loads(cdx.read_text())) if not summary.problems else None
    return Check.result("SBOM", summary.problems, detail), packages


def needed_inputs(path: Path) -> set[str]:
    """The top-level input documents a policy reads (`input.files`, ...)."""
    return set(INPUT_REFERENCE.findall(path.read_text()))


def policy_checks(document: dict, out_dir: Path) -> list[Check]:
    """One check per policy; a policy whose input could not be produced did not run."""
    files = policy.policy_files()
    runnable = [p for p in files if needed_inputs(p) <= set(document)]
    checks = {
        p.stem: Check.not_run(
            f"policy: {p.stem}",
            f"needs input.{', input.'.join(sorted(needed_inputs(p) - set(document)))}, which an earlier step "
            "could not produce (see above)",
        )
        for p in files
        if p not in runnable
    }
    with step(f"policies ({len(files)} Rego files, regopy)"):
        results = policy.evaluate(document, runnable) if runnable else []
    for r in results:
        name = f"policy: {r.rule}"
        checks[r.rule] = (
            Check.not_run(name, f"{r.path.relative_to(ROOT)} could not be evaluated: {r.error}")
            if r.error
            else Check.result(name, r.denials, policy.describe(r.path))
        )
    report = [{"rule": r.rule, "denials": r.denials, "error": r.error} for r in results]
    (out_dir / "policy.json").write_text(json.dumps(report, indent=2) + "\n")
    return [checks[p.stem] for p in files]


def waiver_check() -> Check:
    """The project's rule for trivy waivers: explained and unexpired (runs even without trivy)."""
    waivers, problems = trivy.load_waivers()
    return Check.result("trivy waivers", problems, f"{len(waivers)} in force in {trivy.WAIVERS.relative_to(ROOT)}")


def trivy_check(docker: str, archive: Path, out_dir: Path) -> Check:
    """Run trivy and gate on its report; not run (with the reason) when trivy cannot run here."""
    try:
        runner = trivy.find_trivy(docker)
        with step(f"{runner.describe()}: {trivy.SCANNERS}"):
            report_path, sarif_path = trivy.run_trivy(runner, archive, out_dir)
        sarif_count = trivy.sarif_results(sarif_path)
    except (trivy.TrivyUnavailable, UserError) as exc:
        return Check.not_run(TRIVY_CHECK, f"{exc}")
    waivers, _ = trivy.load_waivers()
    result = trivy.gate(trivy.load_report(report_path), waivers)
    counts = ", ".join(f"{n} {key}" for key, n in sorted(result.counts.items())) or "no findings"
    detail = (
        f"{runner.describe()}: {counts}; {len(result.waived)} waived, {result.unfixed_gating_severity} HIGH/CRITICAL "
        f"without a fix (not gating); trivy.json, trivy.sarif ({sarif_count} results)"
    )
    return Check.result(TRIVY_CHECK, [f.text() for f in result.blocking], detail)


def scan(target: Target, *, allow_missing_trivy: bool = False, out_dir: Path | None = None) -> Verdict:
    """Run every check on `target`; write the reports; return the verdict."""
    docker = ensure_engine()
    config = inspect(docker, target)
    out_dir = out_dir or report_dir(target.variant)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("trivy.json", "trivy.sarif"):  # never leave a report of an earlier scan beside this one
        (out_dir / stale).unlink(missing_ok=True)
    CACHE_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="scan-", dir=CACHE_DIR) as work:
        archive = Path(work) / "image.tar"
        with step(f"docker save {target.ref}"):
            run([docker, "save", "-o", str(archive), target.ref])
        checks, listing = secrets_checks(archive, target.bento_dir, out_dir)
        sbom_result, packages = sbom_check(archive, out_dir)
        checks.append(sbom_result)
        document: dict = {
            "dockerfile": policy.parse_dockerfile(
                target.dockerfile.read_text(), _display(target.dockerfile), target.build_args
            ),
            "config": config,
            "build": {"local_bases": list(target.local_bases)},
        }
        if listing is not None:
            document["files"] = listing
        if packages is not None:
            document["packages"] = packages
        checks += policy_checks(document, out_dir)
        checks.append(waiver_check())
        checks.append(trivy_check(docker, archive, out_dir))
    return Verdict(checks, allow_missing_trivy)


def _display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_record(target: Target, verdict: Verdict, out_dir: Path) -> Path:
    """build/scan-<variant>.json: what was scanned, every check, and the verdict."""
    record: records.ScanRecord = {
        "variant": target.variant,
        "image_ref": target.ref,
        "image_id": target.image_id,
        "passed": verdict.passed,
        "allow_missing_trivy": verdict.allow_missing_trivy,
        "without_vulnerability_scan": verdict.without_vulnerability_scan,
        "scanned_at": rfc3339(int(time.time())),
        "reports": _display(out_dir),
        "checks": [asdict(c) for c in verdict.checks],
    }
    return records.write_scan(record, target.variant)


def summary(target: Target, verdict: Verdict, max_findings: int = 10) -> str:
    """The end-of-scan table (every check, whether it ran, what it found), then the findings."""
    rows = [(c.name, c.status, len(c.findings) if c.ran else "-", c.detail) for c in verdict.checks]
    lines = [
        f"scan of {target.ref} ({target.image_id[:19]})",
        "",
        table(rows, ("check", "result", "findings", "detail")),
    ]
    for check in verdict.checks:
        if check.findings:
            lines += ["", f"{check.name}:"]
            lines += [f"  {finding}" for finding in check.findings[:max_findings]]
            if len(check.findings) > max_findings:
                more = len(check.findings) - max_findings
                lines.append(f"  ... and {more} more ({_display(records.scan_path(target.variant))})")
    lines.append("")
    if verdict.without_vulnerability_scan and verdict.allow_missing_trivy:
        lines.append(
            "!!! NO VULNERABILITY SCAN: trivy did not run, and --allow-missing-trivy let the gate go on without it."
        )
    if verdict.passed:
        lines.append(f"gate: PASSED ({len(verdict.checks)} checks)")
    else:
        names = ", ".join(f"{c.name} ({c.status})" for c in verdict.blocking)
        advice = []
        if any(c.ran for c in verdict.blocking):
            advice.append("Fix or waive each finding and scan again.")
        if any(not c.ran for c in verdict.blocking):
            advice.append("A check that did not run says why in its detail.")
        if any(c.name == TRIVY_CHECK and not c.ran for c in verdict.blocking):
            advice.append("To go on without a vulnerability scan: `-- --allow-missing-trivy` (it is recorded).")
        lines.append(f"gate: FAILED: {names}. {' '.join(advice)}")
    return "\n".join(lines)


def main() -> None:
    """`python -m ci.gate.scan --variant cpu [--allow-missing-trivy]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="cpu", choices=build_image.IMAGES)
    parser.add_argument(
        "--allow-missing-trivy",
        action="store_true",
        help="let the gate pass when trivy cannot run (the summary and build/scan-<variant>.json say so)",
    )
    args = parser.parse_args()
    target = target_for(args.variant)
    out_dir = report_dir(args.variant)
    # The verdict of an earlier scan must not outlive a scan that stops halfway.
    records.scan_path(args.variant).unlink(missing_ok=True)
    verdict = scan(target, allow_missing_trivy=args.allow_missing_trivy, out_dir=out_dir)
    record = write_record(target, verdict, out_dir)
    say(f"scan finished: {record.relative_to(ROOT)}, reports in {out_dir.relative_to(ROOT)}/")
    print(summary(target, verdict))
    if not verdict.passed:
        sys.exit(1)


if __name__ == "__main__":
    main_guard(main)
