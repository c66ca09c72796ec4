"""The cross-CPU check: DVC's hashes computed the same way, and a difference reported, not hidden."""

from __future__ import annotations

import hashlib
import json

import pytest

from ci.model import cpu_parity
from ci.project import ROOT


def test_dir_hash_is_dvcs(tmp_path):
    """A directory output hashes as DVC's `.dir` md5: the sorted JSON listing of relpaths and md5s."""
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "b" / "c.txt").write_bytes(b"c")
    listing = [
        {"md5": hashlib.md5(b"a").hexdigest(), "relpath": "a.txt"},
        {"md5": hashlib.md5(b"c").hexdigest(), "relpath": "b/c.txt"},
    ]
    want = hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"
    assert cpu_parity.dvc_dir_md5(tmp_path) == want


def test_locked_outputs_cover_train_and_evaluate():
    """Every output of the two stages that do floating-point work is compared, with dvc.lock's hash."""
    outputs = cpu_parity.locked_outputs(ROOT / "dvc.lock")
    assert {"models/classifier", "reports/metrics.json", "reports/golden.json"} <= outputs.keys()
    assert outputs["models/classifier"].endswith(".dir")


def test_compare_marks_differences_and_missing_outputs(tmp_path):
    """An output with other bytes is DIFFERENT, one the stage did not write is too."""
    (tmp_path / "m.json").write_bytes(b"x")
    rows = cpu_parity.compare(
        tmp_path, {"m.json": hashlib.md5(b"x").hexdigest(), "other.json": "0" * 32, "gone.json": "1" * 32}
    )
    verdicts = {row[0]: row[3] for row in rows}
    assert verdicts == {"m.json": "same", "other.json": "DIFFERENT", "gone.json": "DIFFERENT"}


@pytest.mark.parametrize(
    ("machine", "flags", "reason"),
    [
        ("x86_64", {"avx2", "fma", "avx512f"}, ""),
        ("x86_64", {"avx2", "fma"}, ""),
        ("x86_64", {"sse4_2"}, "the CPU lacks avx2, fma"),
        ("aarch64", set(), "the CPU is aarch64, not x86-64"),
    ],
    ids=["avx512", "avx2", "no-avx2", "arm"],
)
def test_pins_apply_on_x86_64_with_avx2_only(machine, flags, reason):
    """The pinned kernels need AVX2 and FMA on x86-64; elsewhere the reason is given instead of pinning."""
    from pipeline import numerics

    assert numerics.unpinnable_reason(machine, flags) == reason
