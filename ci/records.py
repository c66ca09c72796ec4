"""The records the stages hand each other under build/: what was built, scanned and pushed, one owner.

    build/repro.json             written by `nox -s repro` (ci/model/repro.py): what ran, and the metrics
    build/image-<variant>.json   written by `nox -s build` (ci/image/build.py), or `image_archive load`;
                                 build/image-tracking.json: the compose stack's MLflow server (ci/image/tracking.py)
    build/scan-<variant>.json    written by `nox -s scan` (ci/gate/scan.py): every check and the verdict
    build/push-<variant>.json    written by `nox -s push` (ci/publish/push.py): the digest and the refs pushed

Each kind has its path, load and write here, and nowhere else; `check_gate` (may this image be
pushed?) sits beside the scan record it reads. Standard library only, and it imports nothing of this
project: the scripts CI runs on the runner's own Python (ci/runner/summary.py, ci/runner/signing.py) read
these records too, and ci/project.py (which needs PyYAML and the pipeline) takes ROOT, BUILD_DIR and
UserError from here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / "build"  # outputs of one build: the Bento, the records, summaries (git-ignored)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class UserError(Exception):
    """A problem the user can fix; printed as one sentence that says what to do, no traceback."""


class RecordError(UserError):
    """A record is missing or unreadable; the message says which command writes it."""


class ReproRecord(TypedDict, total=False):
    """build/repro.json: what `nox -s repro` pulled, ran and pushed, and the model's test metrics."""

    ran: list[str]  # the stages dvc ran
    trained: bool
    pushed: bool
    remote: str  # the DVC remote's URL, "" without one
    dvc_lock_changed: bool
    metrics: dict[str, Any]  # reports/metrics.json as the run left it: {model: {metric: value}, ...}


class LayerRecord(TypedDict):
    """One layer of the image as `docker history` lists it."""

    created_by: str
    size: int


class ImageRecord(TypedDict, total=False):
    """build/image-<variant>.json: the normalized image `nox -s build` made, and what it was made from."""

    variant: str
    ref: str  # <repository>:<version>-<variant>
    id: str  # the normalized image's ID (sha256:...), what every later stage checks against
    raw_id: str  # `docker build`'s own output, before normalizing
    epochs: list[int]  # [file times, created time]
    layer_format: int  # ci.image.oci.LAYER_FORMAT: an image normalized by older code is redone
    listings: list[str]  # per layer, its file listing under .cache/layers/
    size: int
    rootfs_layers: list[str]  # diff IDs
    layers: list[LayerRecord]
    base: str
    base_source: str
    base_lock_changes: list[str]
    bento: str  # the Bento tag
    bento_digest: str  # ci.project.tree_digest of build/bento
    model_tag: str
    labels: dict[str, str]  # the OCI and project labels (ci.image.build.LABELS)
    port: int
    dockerfile: str  # the Dockerfile it was built from, relative to the checkout
    build_args: dict[str, str]  # the --build-arg values `docker build` got
    lock: str  # the tracking server image (no Bento): the lock it installs, relative to the checkout


class CheckRecord(TypedDict):
    """One check of the scan gate; `passed` is None exactly when it did not run."""

    name: str
    ran: bool
    passed: bool | None
    findings: list[str]
    detail: str


class ScanRecord(TypedDict, total=False):
    """build/scan-<variant>.json: what `nox -s scan` scanned, every check, and the verdict."""

    variant: str
    image_ref: str
    image_id: str  # the image the verdict is for: push checks it is the one it pushes
    passed: bool
    allow_missing_trivy: bool
    without_vulnerability_scan: bool
    scanned_at: str  # UTC, ISO 8601
    reports: str  # the directory of the reports, relative to the checkout
    checks: list[CheckRecord]


class PushRecord(TypedDict, total=False):
    """build/push-<variant>.json: where `nox -s push` put the image, by digest, and what it sent."""

    variant: str
    repository: str
    digest: str  # sha256:... of the manifest
    by_digest: str  # <repository>@<digest>
    image_id: str
    version: str
    tags: list[str]
    refs: list[str]
    size: int | None  # compressed bytes, None when the registry's manifest could not be read
    layers: list[dict[str, Any]]
    pushed: dict[str, int | None]  # {"layers": n, "bytes": n or None}: sent now
    reused: dict[str, int | None]  # already in the registry
    verified: bool
    scan_gate: str
    dirty: bool


def repro_path(build_dir: Path | None = None) -> Path:
    """Where `nox -s repro` records the pipeline's run."""
    return (build_dir or BUILD_DIR) / "repro.json"


def image_path(variant: str, build_dir: Path | None = None) -> Path:
    """Where the build records what it built for `variant`."""
    return (build_dir or BUILD_DIR) / f"image-{variant}.json"


def scan_path(variant: str, build_dir: Path | None = None) -> Path:
    """Where the verdict of the last scan of `variant` goes (beside its image record)."""
    return (build_dir or BUILD_DIR) / f"scan-{variant}.json"


def push_path(variant: str, build_dir: Path | None = None) -> Path:
    """Where push records the digest it pushed `variant` as."""
    return (build_dir or BUILD_DIR) / f"push-{variant}.json"


def _load(path: Path, missing: str, fix: str) -> Any:
    """The JSON at path; a RecordError `<missing>: <fix>` without it, `cannot read ...: <fix>` when unreadable."""
    if not path.is_file():
        raise RecordError(f"{missing}: {fix}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RecordError(f"cannot read {path} ({exc}): {fix}") from exc


def load_repro(build_dir: Path | None = None) -> ReproRecord:
    """The record of the last `nox -s repro`, or a RecordError that says to run it."""
    return _load(repro_path(build_dir), "the pipeline has not run", "run `nox -s repro` first.")


def load_image(variant: str = "cpu", build_dir: Path | None = None) -> ImageRecord:
    """The record of the last build of `variant`, or a RecordError that says to build."""
    return _load(image_path(variant, build_dir), f"no {variant} image has been built", "run `nox -s build` first.")


def load_scan(variant: str, build_dir: Path | None = None) -> ScanRecord:
    """The verdict of the last scan of `variant`, or a RecordError that says to scan."""
    fix = f"run `nox -s 'scan({variant})'` first."
    return _load(scan_path(variant, build_dir), f"no {variant} image has been scanned", fix)


def load_push(variant: str, build_dir: Path | None = None) -> PushRecord:
    """What the last push of `variant` pushed, or a RecordError that says to push."""
    fix = f"run `nox -s push -- --variant {variant}` first."
    return _load(push_path(variant, build_dir), f"no {variant} image has been pushed", fix)


# Each writer's byte format is kept as it was: image and push records sorted by key, the scan record
# in the order it is written (variant, image, verdict, then the checks), so a reader sees the verdict first.
def _write(path: Path, record: Any, *, sort_keys: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=sort_keys) + "\n")
    return path


def write_repro(record: ReproRecord, build_dir: Path | None = None) -> Path:
    """Write build/repro.json; return its path."""
    return _write(repro_path(build_dir), record, sort_keys=True)


def write_image(record: ImageRecord, variant: str, build_dir: Path | None = None) -> Path:
    """Write build/image-<variant>.json; return its path."""
    return _write(image_path(variant, build_dir), record, sort_keys=True)


def write_scan(record: ScanRecord, variant: str, build_dir: Path | None = None) -> Path:
    """Write build/scan-<variant>.json; return its path."""
    return _write(scan_path(variant, build_dir), record, sort_keys=False)


def write_push(record: PushRecord, variant: str, build_dir: Path | None = None) -> Path:
    """Write build/push-<variant>.json; return its path."""
    return _write(push_path(variant, build_dir), record, sort_keys=True)


def recorded_variants(path_of: Callable[[str, Path | None], Path], build_dir: Path | None = None) -> list[str]:
    """The variants with a record of one kind in build_dir, sorted: `recorded_variants(image_path)`."""
    prefix, suffix = path_of("*", build_dir).name.split("*")
    return sorted(p.name[len(prefix) : -len(suffix)] for p in (build_dir or BUILD_DIR).glob(f"{prefix}*{suffix}"))


def check_gate(variant: str, image_id: str, build_dir: Path | None = None) -> str:
    """For push: a note when the last scan of this very image passed; a UserError otherwise."""
    path = scan_path(variant, build_dir)
    scan_cmd = f"nox -s 'scan({variant})'"
    if not path.is_file():
        raise RecordError(
            f"the {variant} image has not passed the scan gate (no {path.name}): run `{scan_cmd}`, "
            "or push it unscanned with --skip-scan-gate."
        )
    record = load_scan(variant, build_dir)
    if record.get("image_id") != image_id:
        raise UserError(
            f"the last scan of the {variant} image ({path.name}) was of {record.get('image_id')}, not of the built "
            f"image {image_id}: run `{scan_cmd}` again."
        )
    if not record.get("passed"):
        blocking = [c["name"] for c in record.get("checks", []) if c.get("passed") is not True]
        raise UserError(
            f"the {variant} image failed the scan gate ({', '.join(blocking) or 'no checks'}): fix it and run "
            f"`{scan_cmd}`, or push it anyway with --skip-scan-gate."
        )
    if record.get("without_vulnerability_scan"):
        return f"{variant}: passed the scan gate WITHOUT a vulnerability scan (--allow-missing-trivy)"
    return f"{variant}: passed the scan gate ({len(record.get('checks', []))} checks)"
