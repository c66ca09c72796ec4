"""The main job's closing summary: model metrics beside the baseline, the image, the test results."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

from ci.build_image import VARIANTS
from ci.project import BUILD_DIR, METRICS, human_bytes, main_guard, table
from ci.records import image_path, load_image
from ci.repro import RECORD as REPRO_RECORD
from pipeline.artifacts import METRIC_NAMES

RESULTS = BUILD_DIR / "test-results"


def test_counts(path) -> dict[str, int]:
    """passed/failed/errors/skipped from a JUnit XML file written by pytest."""
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    return {"passed": total - failed - errors - skipped, "failed": failed, "errors": errors, "skipped": skipped}


def _age(mtime: float) -> str:
    minutes = int((time.time() - mtime) // 60)
    return "just now" if minutes < 1 else f"{minutes} min ago"


def provenance(records: list[dict]) -> str:
    """Where the model and the base came from, and which locks changed and need a commit."""
    lines = []
    if REPRO_RECORD.is_file():
        repro = json.loads(REPRO_RECORD.read_text())
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


def render() -> str:
    """Build the summary text from the files the pipeline, the build and the tests wrote."""
    parts = []
    metrics = json.loads(METRICS.read_text())
    parts.append(
        table(
            [
                (m, f"{metrics['classifier'][m]:.4f}", f"{metrics['baseline'][m]:.4f}")
                for m in METRIC_NAMES
                if m in metrics["classifier"]
            ],
            ("metric", "keras classifier", "sklearn baseline"),
        )
    )
    records = [load_image(variant) for variant in VARIANTS if image_path(variant).is_file()]
    if not records:
        load_image()  # raises the one-sentence "build first" error
    parts.append(
        table(
            [(r["variant"], r["ref"], r["id"][:19], human_bytes(r["size"]), len(r["rootfs_layers"])) for r in records],
            ("variant", "image", "id", "size", "layers"),
        )
    )
    first = records[0]
    parts.append(f"model {first['model_tag']}, Bento {first['bento']} (sha256:{first['bento_digest'][:16]})")
    parts.append(provenance(records))
    # Results of earlier runs may lie beside this run's: say when each ran rather than guess.
    rows = [
        (path.stem, *test_counts(path).values(), _age(path.stat().st_mtime)) for path in sorted(RESULTS.glob("*.xml"))
    ]
    headers = ("tests", "passed", "failed", "errors", "skipped", "ran")
    parts.append(table(rows, headers) if rows else "no test results found")
    return "\n\n".join(parts)


def main() -> None:
    """`python -m ci.summary`: print the summary."""
    print("\n" + render())


if __name__ == "__main__":
    main_guard(main)
