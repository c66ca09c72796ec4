"""After `nox -s repro` in CI: is the committed dvc.lock current, and did the run leave the tree clean?

`dvc repro` on a fresh clone re-runs every stage (outputs are not in git) and rewrites dvc.lock.
What must not differ from the committed dvc.lock is what the pipeline *is*: stages, commands,
params and the hashes of source dependencies (code, configuration). A difference there means
someone changed the pipeline without re-running it and committing dvc.lock: that fails.

The hashes of outputs (and of stage inputs that are another stage's outputs) are another matter.
Training is byte-reproducible on one CPU type (docs/pipeline.md: fixed seeds, one thread, oneDNN off), but
GitHub's hosted runners are not all the same CPU model, and floating-point kernels may round
differently on another one: failing on that would make the check flaky and teach people to
ignore it. So output drift is a warning that names the CPU, and `nox -s reproduce` checks
determinism strictly on one machine. On runners of one known CPU type, `--strict` makes output
drift fail too. Any other change to tracked files, or a new file git does not ignore, fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ci.records import ROOT

LOCK = "dvc.lock"


@dataclass
class Drift:
    """What differs between the committed and the reproduced dvc.lock."""

    errors: list[str] = field(default_factory=list)  # the pipeline changed: commit dvc.lock
    warnings: list[str] = field(default_factory=list)  # only output bytes differ (CPU-dependent)


def _by_path(items: list[dict] | None) -> dict[str, dict]:
    return {item["path"]: item for item in items or []}


def output_paths(lock: dict) -> set[str]:
    """Every path some stage writes."""
    return {path for stage in (lock.get("stages") or {}).values() for path in _by_path(stage.get("outs"))}


def is_derived(path: str, outputs: set[str]) -> bool:
    """True when `path` is a stage output or lies inside one (e.g. data/prepared/train.csv)."""
    return any(path == out or path.startswith(out.rstrip("/") + "/") for out in outputs)


def lock_drift(committed: dict, reproduced: dict) -> Drift:
    """Compare two parsed dvc.lock files; see the module docstring for what is an error."""
    drift = Drift()
    old, new = committed.get("stages") or {}, reproduced.get("stages") or {}
    outputs = output_paths(committed) | output_paths(reproduced)
    for name in sorted(old.keys() | new.keys()):
        if name not in old or name not in new:
            drift.errors.append(f"stage {name}: {'added' if name in new else 'removed'} since dvc.lock was committed")
            continue
        before, after = old[name], new[name]
        for key in ("cmd", "params"):
            if before.get(key) != after.get(key):
                drift.errors.append(f"stage {name}: {key} changed")
        for kind in ("deps", "outs"):
            was, now = _by_path(before.get(kind)), _by_path(after.get(kind))
            for path in sorted(was.keys() | now.keys()):
                if path not in was or path not in now:
                    drift.errors.append(f"stage {name}: {kind[:-1]} {path} {'added' if path in now else 'removed'}")
                elif was[path] != now[path]:
                    if kind == "outs" or is_derived(path, outputs):
                        drift.warnings.append(f"stage {name}: {kind[:-1]} {path} has other bytes")
                    else:
                        drift.errors.append(f"stage {name}: dependency {path} changed")
    return drift


def untidy_files(porcelain: str) -> list[str]:
    """Tracked files changed and untracked files git does not ignore, except dvc.lock."""
    paths = [line[3:] for line in porcelain.splitlines() if len(line) > 3]
    return [path for path in paths if path != LOCK]


def cpu_model() -> str:
    """The CPU's model name, for the warning (outputs are reproducible per CPU type)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _warn(message: str) -> None:
    # In GitHub Actions a workflow command turns the line into an annotation on the run.
    prefix = "::warning title=dvc.lock outputs differ::" if os.environ.get("GITHUB_ACTIONS") else "warning: "
    print(f"{prefix}{message}")


def main(argv: list[str] | None = None) -> int:
    """`python -m ci.model.lock_check [--strict]`, after `nox -s repro`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="fail on output hashes too (runners of one CPU type)")
    args = parser.parse_args(argv)
    try:
        committed = yaml.safe_load(_git("show", f"HEAD:{LOCK}"))
        porcelain = _git("status", "--porcelain", "--untracked-files=all")
    except subprocess.CalledProcessError as exc:
        print(f"error: git failed ({exc.stderr.strip()}): run this in a git checkout with {LOCK} committed.")
        return 2
    drift = lock_drift(committed, yaml.safe_load((ROOT / LOCK).read_text()))
    untidy = untidy_files(porcelain)
    for line in drift.errors:
        print(f"stale dvc.lock: {line}")
    for path in untidy:
        print(f"changed by the run: {path}")
    if drift.warnings:
        listing = "; ".join(drift.warnings)
        _warn(f"on this CPU ({cpu_model()}) the pipeline's outputs differ from dvc.lock: {listing}")
    if drift.errors:
        print("error: dvc.lock does not match the pipeline: run `nox -s repro` and commit dvc.lock.")
    if args.strict and drift.warnings:
        print("error: --strict: output bytes differ from dvc.lock on this CPU; see the warning above.")
    if untidy:
        print("error: `dvc repro` changed tracked files or left files git does not ignore: commit or ignore them.")
    failed = bool(drift.errors or untidy or (args.strict and drift.warnings))
    if not failed:
        state = "outputs differ on this CPU (warning only)" if drift.warnings else "byte for byte"
        print(f"repro check: dvc.lock is current ({state}); the work tree is clean")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
