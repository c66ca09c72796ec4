"""The records the stages hand each other: one path, load and write each, the scan gate, standard library only."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from ci import records
from ci.project import UserError

IMAGE: records.ImageRecord = {"variant": "cpu", "ref": "r:1-cpu", "id": "sha256:abc", "size": 1, "port": 3000}
PUSH: records.PushRecord = {"variant": "cpu", "repository": "ghcr.io/you/img", "digest": "sha256:" + "0a" * 32}


@pytest.mark.parametrize(
    ("path_of", "name"),
    [
        (records.image_path, "image-cuda.json"),
        (records.scan_path, "scan-cuda.json"),
        (records.push_path, "push-cuda.json"),
    ],
    ids=["image", "scan", "push"],
)
def test_each_record_lies_in_the_build_directory(path_of, name, tmp_path):
    """build/<kind>-<variant>.json, or the same name under another build directory (a clone's)."""
    assert path_of("cuda") == records.BUILD_DIR / name
    assert path_of("cuda", tmp_path) == tmp_path / name


def test_a_record_reads_back_as_written(tmp_path, scan_record):
    """write then load gives the same record, for every kind."""
    scan = scan_record()
    assert records.write_image(IMAGE, "cpu", tmp_path) == tmp_path / "image-cpu.json"
    records.write_scan(scan, "cpu", tmp_path)
    records.write_push(PUSH, "cpu", tmp_path)
    assert records.load_image("cpu", tmp_path) == IMAGE
    assert records.load_scan("cpu", tmp_path) == scan
    assert records.load_push("cpu", tmp_path) == PUSH


def test_the_byte_format_is_each_writers_own(tmp_path, scan_record):
    """Image and push records are sorted by key; the scan record keeps its order (the verdict before the checks)."""
    path = records.write_image({"variant": "cpu", "id": "sha256:abc"}, "cpu", tmp_path)
    assert path.read_text() == json.dumps({"id": "sha256:abc", "variant": "cpu"}, indent=2) + "\n"
    scan = scan_record()
    path = records.write_scan(scan, "cpu", tmp_path)
    assert path.read_text() == json.dumps(scan, indent=2) + "\n"
    assert list(json.loads(path.read_text())) == list(scan)


@pytest.mark.parametrize(
    ("load", "command"),
    [
        (records.load_image, "run `nox -s build` first."),
        (records.load_scan, "run `nox -s 'scan(cuda)'` first."),
        (records.load_push, "run `nox -s push -- --variant cuda` first."),
    ],
    ids=["image", "scan", "push"],
)
def test_a_missing_or_broken_record_says_which_command_writes_it(load, command, tmp_path):
    """One sentence, a UserError (so main_guard prints it without a traceback), for a missing or unreadable file."""
    with pytest.raises(UserError, match=r"^no cuda image has been \w+: ") as missing:
        load("cuda", tmp_path)
    assert str(missing.value).endswith(command)
    for kind in ("image", "scan", "push"):
        (tmp_path / f"{kind}-cuda.json").write_text("{not json")
    with pytest.raises(records.RecordError, match=r"^cannot read .*-cuda\.json \(") as broken:
        load("cuda", tmp_path)
    assert str(broken.value).endswith(command)


def test_the_variants_with_a_record_are_listed(tmp_path):
    """recorded_variants names the variants of one kind, sorted, and nothing of another kind."""
    records.write_image(IMAGE, "cuda", tmp_path)
    records.write_image(IMAGE, "cpu", tmp_path)
    records.write_push(PUSH, "cpu", tmp_path)
    assert records.recorded_variants(records.image_path, tmp_path) == ["cpu", "cuda"]
    assert records.recorded_variants(records.push_path, tmp_path) == ["cpu"]
    assert records.recorded_variants(records.scan_path, tmp_path) == []


def test_an_unscanned_image_has_not_passed_the_gate(tmp_path):
    """Without a scan record the gate says how to scan, or how to push unscanned on purpose."""
    with pytest.raises(
        UserError, match=r"has not passed the scan gate \(no scan-cpu.json\): run `nox -s 'scan\(cpu\)'`"
    ):
        records.check_gate("cpu", "sha256:abc", tmp_path)


def test_a_scan_of_another_image_does_not_count(tmp_path, scan_record):
    """The scan must be of the very image ID that would be pushed."""
    records.write_scan(scan_record(image_id="sha256:other"), "cpu", tmp_path)
    with pytest.raises(UserError, match="was of sha256:other, not of the built image sha256:abc"):
        records.check_gate("cpu", "sha256:abc", tmp_path)


def test_a_failed_scan_shuts_the_gate_and_names_the_checks(tmp_path, scan_record):
    """A scan that failed names the checks that failed."""
    records.write_scan(scan_record(passed=False, failed=["policy: non_root_user"]), "cpu", tmp_path)
    with pytest.raises(UserError, match=r"failed the scan gate \(policy: non_root_user\)"):
        records.check_gate("cpu", "sha256:abc", tmp_path)


def test_a_passed_scan_opens_the_gate_and_says_when_trivy_did_not_run(tmp_path, scan_record):
    """A pass of this image gives a note for the push summary; a pass without trivy says so in capitals."""
    records.write_scan(scan_record(), "cpu", tmp_path)
    assert records.check_gate("cpu", "sha256:abc", tmp_path) == "cpu: passed the scan gate (1 checks)"
    records.write_scan(scan_record(without_trivy=True), "cpu", tmp_path)
    assert "WITHOUT a vulnerability scan" in records.check_gate("cpu", "sha256:abc", tmp_path)


def test_the_module_needs_only_the_standard_library():
    """ci/records.py imports nothing outside the standard library, so scripts on the runner's Python can use it."""
    tree = ast.parse(Path(records.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    top_level = {name.split(".")[0] for name in imported if name}
    assert top_level <= sys.stdlib_module_names | {"__future__"}, top_level - sys.stdlib_module_names
