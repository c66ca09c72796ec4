"""The summaries of build/: a job's in Markdown, and the main job's closing one on the terminal.

One reader of what the sessions wrote under build/ (ci/records.py), with one JUnit parser, in two
forms. `python ci/runner/summary.py`: Markdown for GitHub's job summary: the images a job built,
their scan, what it pushed, and test results. `python -m ci.runner.summary --text` (`nox -s main`'s
end): the model's metrics beside the baseline, the images, where the model and the base came from,
and the test results.

The Markdown form reads repro.json (`nox -s repro`), image-<variant>.json (`nox -s build`),
scan-<variant>.json (`nox -s scan`: every check, whether it ran, what it found),
push-<variant>.json (`nox -s push`: `digest` and the `refs` it pushed) and test-results/*.xml
(pytest's JUnit XML). Appends to $GITHUB_STEP_SUMMARY in GitHub Actions, prints otherwise.
Missing files are simply left out, so every job can call it. Standard library only: it runs on
the runner's Python, outside the locked environment.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

if not __package__:  # run as `python ci/runner/summary.py`: the checkout is not on sys.path (as pip's __main__ does)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ci.records import (
    BUILD_DIR,
    ImageRecord,
    PushRecord,
    RecordError,
    ReproRecord,
    ScanRecord,
    image_path,
    load_image,
    load_push,
    load_repro,
    load_scan,
    push_path,
    recorded_variants,
    scan_path,
)
from ci.text import human_bytes, table

MAX_FAILURES = 20  # failures listed by name; the rest are counted


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


def _age(mtime: float) -> str:
    minutes = int((time.time() - mtime) // 60)
    return "just now" if minutes < 1 else f"{minutes} min ago"


def metrics_table(metrics: dict) -> str:
    """The test metrics of every model evaluate wrote, side by side (metrics.json: {model: {metric: value}})."""
    models = [name for name, value in metrics.items() if isinstance(value, dict)]
    names = list(dict.fromkeys(metric for model in models for metric in metrics[model]))
    rows = [(m, *(f"{metrics[model][m]:.4f}" if m in metrics[model] else "–" for model in models)) for m in names]
    return table(rows, ("metric", *models))


def provenance(repro: ReproRecord | None, records: list[ImageRecord]) -> str:
    """Where the model and the base came from, and which locks changed and need a commit."""
    lines = []
    if repro is not None:
        if repro["trained"]:
            lines.append(f"model: trained here (no remote had it), pushed to {repro['remote'] or 'no remote'}")
        else:
            lines.append(f"model: from the DVC remote or workspace, not trained ({repro['remote'] or 'no remote'})")
        if repro["dvc_lock_changed"]:
            lines.append("dvc.lock changed: review `git diff dvc.lock` and commit dvc.lock")
    for record in records:
        lines.append(f"base ({record['variant']}): {record['base']} from {record.get('base_source', 'unknown')}")
    changes = sorted({change for record in records for change in record.get("base_lock_changes") or []})
    if changes:
        lines.append(
            f"base-packages.lock refreshed ({len(changes)} changes): commit base-packages.lock and params.yaml"
        )
        lines += [f"  {change}" for change in changes]
    return "\n".join(lines)


def render_text(build_dir: Path | None = None) -> str:
    """The main job's closing summary for the terminal; a RecordError when nothing was built."""
    build_dir = build_dir or BUILD_DIR
    try:
        repro: ReproRecord | None = load_repro(build_dir)
    except RecordError:
        repro = None  # a build from a workspace `dvc repro` made: the metrics and provenance are unknown
    records = [load_image(variant, build_dir) for variant in recorded_variants(image_path, build_dir)]
    if not records:
        load_image("cpu", build_dir)  # raises the one-sentence "build first" error
    parts = [metrics_table(repro["metrics"]) if repro and repro.get("metrics") else "metrics: run `nox -s repro`"]
    parts.append(
        table(
            [(r["variant"], r["ref"], r["id"][:19], human_bytes(r["size"]), len(r["rootfs_layers"])) for r in records],
            ("variant", "image", "id", "size", "layers"),
        )
    )
    # The serving variants carry the model; the tracking server's record (build(tracking)) has none.
    if served := [r for r in records if "model_tag" in r]:
        first = served[0]
        parts.append(f"model {first['model_tag']}, Bento {first['bento']} (sha256:{first['bento_digest'][:16]})")
    parts.append(provenance(repro, records))
    # Results of earlier runs may lie beside this run's: say when each ran rather than guess.
    rows = []
    for path in sorted((build_dir / "test-results").glob("*.xml")):
        c = junit_counts(path)
        rows.append((path.stem, c["passed"], c["failures"], c["errors"], c["skipped"], _age(path.stat().st_mtime)))
    headers = ("tests", "passed", "failed", "errors", "skipped", "ran")
    parts.append(table(rows, headers) if rows else "no test results found")
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """`python ci/runner/summary.py`: the Markdown to $GITHUB_STEP_SUMMARY, or printed; `--text`: the terminal's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", action="store_true", help="the main job's plain-text summary")
    if parser.parse_args(argv).text:
        try:
            print("\n" + render_text())
        except RecordError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
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
