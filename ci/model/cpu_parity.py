"""Check that training gives dvc.lock's bytes on a CPU without AVX-512, on any machine.

Runs the train, evaluate and export stages under `qemu-x86_64 -cpu Haswell` (user-mode emulation of an AVX2
CPU without AVX-512; QEMU 7.2 emulates AVX2 and FMA) in a scratch copy of the prepared data, then
compares every output with the hashes dvc.lock records. On an AVX-512 host this compares the two CPU
families in one run; on an AVX2 host it still checks emulation against the lock. Without the pins of
`pipeline.numerics` the model differs (measured: model.keras 7a11e628 under the pins on both,
7f16d89b unpinned on AVX-512).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from ci.engine import apt_install
from ci.project import ROOT, UserError, main_guard, say, step, table
from pipeline import artifacts, numerics

CPU_MODEL = "Haswell"  # AVX2 + FMA, no AVX-512: the oldest CPU the pins promise the same bytes on
STAGES = ("train", "evaluate", "export")


def md5_file(path: Path) -> str:
    """Hex md5 of a file, as DVC records it."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def dvc_dir_md5(directory: Path) -> str:
    """DVC's hash of a directory output: md5 of the sorted JSON listing of relative paths and md5s."""
    entries = [
        {"md5": md5_file(path), "relpath": path.relative_to(directory).as_posix()}
        for path in sorted(p for p in directory.rglob("*") if p.is_file())
    ]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def locked_outputs(lock_file: Path, stages: tuple[str, ...] = STAGES) -> dict[str, str]:
    """path -> md5 of every output of `stages` in dvc.lock."""
    lock = yaml.safe_load(lock_file.read_text())
    return {out["path"]: out["md5"] for stage in stages for out in lock["stages"][stage]["outs"]}


def output_md5(root: Path, path: str) -> str:
    """The DVC hash of an output under `root` ('missing' when the stage did not write it)."""
    target = root / path
    if target.is_dir():
        return dvc_dir_md5(target)
    return md5_file(target) if target.is_file() else "missing"


def emulate(workdir: Path, cpu: str = CPU_MODEL) -> None:
    """Run the stages in `workdir` under qemu as `cpu`, with this interpreter."""
    for stage in STAGES:
        with step(f"{stage} under qemu-x86_64 -cpu {cpu}"):
            proc = subprocess.run(
                ["qemu-x86_64", "-cpu", cpu, sys.executable, "-m", f"pipeline.{stage}"],
                cwd=workdir,
                capture_output=True,
                text=True,
            )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise UserError(f"the {stage} stage failed under qemu ({cpu}):\n{tail}")
        # qemu warns about CPUID bits TCG lacks (hle, rtm...): noise. The stage's own lines count.
        for line in proc.stdout.splitlines():
            say(line)


def compare(workdir: Path, expected: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """(path, dvc.lock, emulated, verdict) for every output."""
    rows = []
    for path, want in sorted(expected.items()):
        got = output_md5(workdir, path)
        rows.append((path, want[:12], got[:12], "same" if got == want else "DIFFERENT"))
    return rows


def main() -> None:
    """`python -m ci.model.cpu_parity`: train under an emulated AVX2 CPU and compare with dvc.lock."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", default=CPU_MODEL, help="QEMU CPU model (default: %(default)s)")
    args = parser.parse_args()
    if not (ROOT / artifacts.TRAIN_CSV).is_file():
        raise UserError(f"{artifacts.TRAIN_CSV} is missing: run `nox -s repro` first.")
    if not shutil.which("qemu-x86_64"):
        apt_install("qemu-user")
    avx512 = "avx512f" in numerics.cpu_flags()
    say(f"host CPU has AVX-512: {'yes' if avx512 else 'no'}; emulated: {args.cpu} (AVX2, no AVX-512)")
    expected = locked_outputs(ROOT / "dvc.lock")
    with tempfile.TemporaryDirectory(prefix="cpu-parity-") as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "pipeline", work / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(ROOT / "params.yaml", work / "params.yaml")
        shutil.copytree(ROOT / artifacts.PREPARED_DIR, work / artifacts.PREPARED_DIR)
        emulate(work, args.cpu)
        rows = compare(work, expected)
    print(table(rows, ("output", "dvc.lock", f"qemu {args.cpu}", "")))
    different = [row[0] for row in rows if row[3] != "same"]
    if different:
        raise UserError(
            f"training on an emulated {args.cpu} CPU gave other bytes than dvc.lock for {', '.join(different)}: "
            "something in the stages chooses CPU kernels at run time that pipeline/numerics.py does not pin."
        )
    say(f"all {len(rows)} outputs of {', '.join(STAGES)} equal dvc.lock's on an emulated {args.cpu} CPU")


if __name__ == "__main__":
    main_guard(main)
