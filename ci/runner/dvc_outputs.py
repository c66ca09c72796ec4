"""Train once per workflow run: hand the DVC outputs of the `repro` job to every later job.

`repro` trains (`nox -s repro`); build, test and reproduce need the model too, and must not train
again: on a runner with another CPU a second training can give other model bytes, and then the jobs
of one run would test, scan and publish different models. So `repro` packs what DVC needs to call
the pipeline up to date, and the later jobs unpack it before their nox session:

    pack     (repro, locked environment)  checks `dvc status` is clean, then writes build/dvc-outputs.tar:
             dvc.lock as the run left it, every output it lists (data/, models/, reports/), the DVC
             cache (without it `dvc repro` calls every output "not in cache" and runs the stage
             again), and build/dvc-outputs.json: the commit, the CPU, each file's sha256 and mtime.
    unpack   (a later job, before nox)  checks the archive was made from this job's commit, unpacks
             it and checks every file. `dvc repro` is then a no-op: same commit, same dvc.lock, same
             outputs, all in the cache.
    verify   (a later job, after nox)  fails when a handed-over file was rewritten or changed (its
             sha256 or mtime): something ran a pipeline stage again, which a job after repro must not.

unpack and verify need only the standard library (they run on the runner's Python, before nox
has installed anything); pack runs in the locked environment, where PyYAML and dvc are.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
from pathlib import Path

if not __package__:  # run as `python ci/runner/dvc_outputs.py`: the checkout is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ci.records import ROOT, sha256_file

ARCHIVE = Path("build/dvc-outputs.tar")
MANIFEST = Path("build/dvc-outputs.json")  # inside the archive too, so unpack puts it here
LOCK = "dvc.lock"


class HandoverError(Exception):
    """The hand-over cannot be made or used; the message says what to do."""


def head_commit(root: Path = ROOT) -> str:
    """The commit checked out in `root`."""
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HandoverError(f"git cannot name the commit of {root} ({proc.stderr.strip()}): run in a git checkout.")
    return proc.stdout.strip()


def files_under(root: Path, relative: str) -> list[str]:
    """`relative` itself when it is a file, else every file below it; paths relative to root, sorted."""
    path = root / relative
    if path.is_file():
        return [relative]
    return sorted(p.relative_to(root).as_posix() for p in path.rglob("*") if p.is_file())


def fingerprint(root: Path, relative: list[str]) -> dict[str, dict]:
    """sha256, size and mtime (whole seconds, as a tar keeps it) of each file."""
    result = {}
    for rel in relative:
        stat = (root / rel).stat()
        result[rel] = {"sha256": sha256_file(root / rel), "size": stat.st_size, "mtime": int(stat.st_mtime)}
    return result


def changes(root: Path, files: dict[str, dict]) -> list[str]:
    """The handed-over files that are missing, have other bytes, or were written again."""
    found = []
    for rel, want in sorted(files.items()):
        path = root / rel
        if not path.is_file():
            found.append(f"{rel}: missing")
        elif sha256_file(path) != want["sha256"]:
            found.append(f"{rel}: other bytes")
        elif int(path.stat().st_mtime) != want["mtime"]:
            found.append(f"{rel}: written again (same bytes)")
    return found


def write_archive(root: Path, archive: Path, manifest: dict) -> None:
    """The manifest, then every file it lists, with mtimes in whole seconds (so verify can compare)."""
    (root / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w") as tar:
        for rel in [MANIFEST.as_posix(), *manifest["files"]]:
            info = tar.gettarinfo(root / rel, arcname=rel)
            info.mtime = int(info.mtime)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with (root / rel).open("rb") as fh:
                tar.addfile(info, fh)


def read_manifest(archive: Path) -> dict:
    """The manifest stored in the archive."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile(MANIFEST.as_posix())
        if member is None:
            raise HandoverError(f"{archive} has no {MANIFEST}: it was not written by `pack`.")
        return json.loads(member.read())


def unpack(root: Path = ROOT, archive: Path | None = None, *, commit: str | None = None) -> dict:
    """Unpack the hand-over into `root` after checking it is for this commit; return the manifest."""
    archive = archive or root / ARCHIVE
    if not archive.is_file():
        raise HandoverError(
            f"{archive} is missing: download the `dvc-outputs` artifact of this workflow run (the repro job) first."
        )
    manifest = read_manifest(archive)
    commit = commit or head_commit(root)
    if manifest.get("commit") != commit:
        raise HandoverError(
            f"the DVC outputs were made from commit {manifest.get('commit')}, this job checked out {commit}: "
            "use the artifact of this very workflow run."
        )
    expected = {MANIFEST.as_posix(), *manifest["files"]}
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        unexpected = sorted(m.name for m in members if not m.isfile() or m.name not in expected)
        if unexpected:
            raise HandoverError(
                f"{archive} holds what `pack` never writes ({', '.join(unexpected[:3])}): re-run repro."
            )
        for member in members:
            (root / member.name).unlink(missing_ok=True)  # DVC's cache files are read-only
        tar.extractall(root, filter="data")
    if problems := changes(root, manifest["files"]):
        raise HandoverError(f"the unpacked DVC outputs are damaged ({'; '.join(problems[:3])}): re-run the workflow.")
    return manifest


def verify(root: Path = ROOT) -> list[str]:
    """What changed among the files unpack put in place (empty: nothing was trained again)."""
    path = root / MANIFEST
    if not path.is_file():
        raise HandoverError(f"{MANIFEST} is missing: run `python ci/runner/dvc_outputs.py unpack` first.")
    return changes(root, json.loads(path.read_text())["files"])


def pack(root: Path = ROOT, archive: Path | None = None) -> dict:
    """After `nox -s repro` (locked environment): check DVC calls everything up to date, write the archive."""
    import yaml  # the locked environment's; unpack and verify stay on the standard library

    from ci.model.lock_check import cpu_model, output_paths

    dvc = [sys.executable, "-m", "dvc"]
    status = subprocess.run([*dvc, "status", "--json"], cwd=root, capture_output=True, text=True)
    try:
        clean = status.returncode == 0 and json.loads(status.stdout) == {}
    except ValueError:
        clean = False
    if not clean:
        raise HandoverError(
            f"`dvc status` is not clean after the pipeline ran ({(status.stdout or status.stderr).strip()[:300]}): "
            "the later jobs would train again; run `nox -s repro` and read `dvc status`."
        )
    cache = subprocess.run([*dvc, "cache", "dir"], cwd=root, capture_output=True, text=True)
    if cache.returncode != 0:
        raise HandoverError(f"`dvc cache dir` failed: {cache.stderr.strip()[-300:]}")
    cache_dir = Path(cache.stdout.strip()).resolve()
    if not cache_dir.is_relative_to(root.resolve()):
        raise HandoverError(
            f"the DVC cache {cache_dir} lies outside the checkout: keep it in .dvc/cache to hand it over."
        )
    outputs = sorted(output_paths(yaml.safe_load((root / LOCK).read_text())))
    relative = [LOCK]
    for out in [*outputs, cache_dir.relative_to(root.resolve()).as_posix()]:
        relative += files_under(root, out)
    manifest = {
        "commit": head_commit(root),
        "cpu": cpu_model(),
        "outputs": outputs,
        "files": fingerprint(root, relative),
    }
    write_archive(root, archive or root / ARCHIVE, manifest)
    return manifest


def _size(manifest: dict) -> str:
    total = sum(f["size"] for f in manifest["files"].values())
    return f"{len(manifest['files'])} files, {total / 1024:.0f} KiB"


def main(argv: list[str] | None = None) -> int:
    """`python ci/runner/dvc_outputs.py {pack,unpack,verify}` (pack: `python -m ...` in the locked env)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("pack", "unpack", "verify"))
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            manifest = pack()
            print(f"packed {ARCHIVE} ({_size(manifest)}): {', '.join(manifest['outputs'])}, dvc.lock, the DVC cache")
        elif args.command == "unpack":
            manifest = unpack()
            print(
                f"unpacked {ARCHIVE} ({_size(manifest)}), trained by repro on {manifest['cpu']} "
                f"from {manifest['commit'][:12]}: `dvc repro` has nothing to run"
            )
        elif problems := verify():
            for line in problems:
                print(f"  {line}")
            print(
                "error: this job changed the DVC outputs that the repro job handed over: a pipeline stage ran "
                "again, and a job after repro must never train. Find the step that ran `dvc repro` "
                "(`dvc status` says what it found stale) and hand it the outputs instead.",
                file=sys.stderr,
            )
            return 1
        else:
            print("DVC outputs: as the repro job handed them over (nothing was trained here)")
    except HandoverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
