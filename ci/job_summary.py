"""A job's summary in Markdown: the images it built, their scan, what it pushed, and test results.

Reads what the sessions wrote under build/ (ci/records.py): image-<variant>.json (`nox -s build`),
scan-<variant>.json (`nox -s scan`: every check, whether it ran, what it found),
push-<variant>.json (`nox -s push`: `digest` and the `refs` it pushed) and test-results/*.xml
(pytest's JUnit XML). Appends to $GITHUB_STEP_SUMMARY in GitHub Actions, prints otherwise.
Missing files are simply left out, so every job can call it. Standard library only: it runs on
the runner's Python, outside the locked environment.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

if not __package__:  # run as `python ci/job_summary.py`: the checkout is not on sys.path (as pip's __main__ does)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ci.records import (
    BUILD_DIR,
    ImageRecord,
    PushRecord,
    ScanRecord,
    image_path,
    load_image,
    load_push,
    load_scan,
    push_path,
    recorded_variants,
    scan_path,
)

MAX_FAILURES = 20  # failures listed by name; the rest are counted


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def cell(value: object) -> str:
    """A Markdown table cell: code-formatted, with pipes escaped."""
    return f"`{value}`".replace("|", "\\|") if value not in (None, "") else "–"


def image_section(record: ImageRecord) -> str:
    """One built image: reference, ID, size, layers, model and Bento."""
    rows = [
        ("variant", cell(record.get("variant"))),
        ("image", cell(record.get("ref"))),
        ("ID", cell(record.get("id"))),
        ("size", human_bytes(record["size"]) if "size" in record else "–"),
        ("layers", str(len(record.get("rootfs_layers", [])))),
        ("model", cell(record.get("model_tag"))),
        ("Bento", cell(record.get("bento"))),
        ("Bento sha256", cell(record.get("bento_digest"))),
    ]
    return "| image | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def push_section(records: list[PushRecord]) -> str:
    """What was pushed: every reference with the manifest digest it points to."""
    lines = ["| pushed | digest |", "|---|---|"]
    for record in records:
        digest = record.get("digest")
        for ref in record.get("refs") or record.get("tags") or []:
            lines.append(f"| {cell(ref)} | {cell(digest)} |")
    return "\n".join(lines) + "\n"


SCAN_MARK = {True: "✅ passed", False: "❌ failed", None: "⚠️ not run"}


def scan_section(record: ScanRecord) -> str:
    """The scan gate of one variant: every check with its result, then the findings of failed ones."""
    verdict = "passed" if record.get("passed") else "FAILED"
    lines = [
        f"**Scan gate ({record.get('variant')}): {verdict}** — {cell(record.get('image_id'))}",
        "",
        "| check | result | findings | detail |",
        "|---|---|---|---|",
    ]
    failures = []
    for check in record.get("checks", []):
        findings = check.get("findings") or []
        count = str(len(findings)) if check.get("ran") else "–"
        detail = str(check.get("detail") or "").replace("|", "\\|")
        lines.append(f"| {check.get('name')} | {SCAN_MARK[check.get('passed')]} | {count} | {detail} |")
        failures += [f"{check.get('name')}: {finding}" for finding in findings]
    text = "\n".join(lines) + "\n"
    if record.get("without_vulnerability_scan"):
        text += "\n> **No vulnerability scan**: trivy did not run, and `--allow-missing-trivy` let the gate pass.\n"
    if failures:
        shown = "".join(f"- `{f}`\n".replace("|", "\\|") for f in failures[:MAX_FAILURES])
        more = f"- … and {len(failures) - MAX_FAILURES} more\n" if len(failures) > MAX_FAILURES else ""
        text += f"\n**Findings**\n\n{shown}{more}"
    return text


def junit_counts(path: Path) -> dict:
    """Totals and failing test names of one pytest JUnit XML file (<testsuites> or <testsuite>)."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    failed = []
    for suite in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            counts[key] += int(suite.get(key, 0))
        counts["time"] += float(suite.get("time", 0))
        for case in suite.iter("testcase"):
            problem = case.find("failure")
            problem = problem if problem is not None else case.find("error")
            if problem is not None:
                name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
                message = (problem.get("message") or "").strip().splitlines()
                failed.append(f"{name}: {message[0][:200]}" if message else name)
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failed"] = failed
    return counts


def tests_section(paths: list[Path]) -> str:
    """One row per results file, then the failing tests by name."""
    lines = ["| tests | passed | failed | errors | skipped | time |", "|---|---|---|---|---|---|"]
    failures = []
    for path in paths:
        try:
            c = junit_counts(path)
        except (ET.ParseError, ValueError) as exc:
            lines.append(f"| {path.stem} | unreadable: {exc} | | | | |")
            continue
        mark = " ❌" if c["failures"] or c["errors"] else ""
        counts = " | ".join(str(c[k]) for k in ("passed", "failures", "errors", "skipped"))
        lines.append(f"| {path.stem}{mark} | {counts} | {c['time']:.0f} s |")
        failures += c["failed"]
    text = "\n".join(lines) + "\n"
    if failures:
        shown = "".join(f"- `{f}`\n" for f in failures[:MAX_FAILURES])
        more = f"- … and {len(failures) - MAX_FAILURES} more\n" if len(failures) > MAX_FAILURES else ""
        text += f"\n**Failed**\n\n{shown}{more}"
    return text


def render(build_dir: Path | None = None) -> str:
    """The whole summary from what lies in build_dir (build/); an empty string when there is nothing."""
    build_dir = build_dir or BUILD_DIR
    parts = []
    for variant in recorded_variants(image_path, build_dir):
        parts.append(image_section(load_image(variant, build_dir)))
    for variant in recorded_variants(scan_path, build_dir):
        parts.append(scan_section(load_scan(variant, build_dir)))
    pushed = [load_push(variant, build_dir) for variant in recorded_variants(push_path, build_dir)]
    if pushed:
        parts.append(push_section(pushed))
    results = sorted((build_dir / "test-results").glob("*.xml"))
    if results:
        parts.append(tests_section(results))
    return "\n".join(parts)


def main() -> int:
    """`python ci/job_summary.py`: append the summary to $GITHUB_STEP_SUMMARY, or print it."""
    text = render()
    if not text:
        print("job summary: nothing under build/ to summarize")
        return 0
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(text + "\n")
        print(f"job summary: written to $GITHUB_STEP_SUMMARY ({len(text.splitlines())} lines)")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
