"""Run the DVC pipeline with the DVC remote as the source of truth for trained outputs.

One model per commit: the outputs dvc.lock records are pulled from the remote when the workspace
lacks them (`dvc repro --pull`), so a clone on another machine builds its image from the very bytes
the first machine trained. A stage runs only when no remote has its outputs (or its inputs
changed); then the new outputs are pushed, so the next clone pulls them. The run says which stages
it pulled and which it ran, records the run (ci/records.py: build/repro.json) for the main job's
summary, and checks that dvc.lock still equals the commit's: locked (CI), a difference fails; otherwise it is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ci.project import METRICS, ROOT, UserError, git, locked_mode, main_guard, say, step
from ci.records import ReproRecord, write_repro

RUNNING = re.compile(r"^Running stage '([^']+)'")


def ran_stages(output: str) -> list[str]:
    """The stages `dvc repro` ran, in order, from its output."""
    return [m.group(1) for line in output.splitlines() if (m := RUNNING.match(line.strip()))]


def dvc(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """Run dvc from this interpreter's environment; stream its output unless captured."""
    cmd = [sys.executable, "-m", "dvc", *args]
    # dvc runs each stage's `python -m pipeline...` from PATH: it must be this environment's Python.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if capture:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    # Streamed and kept: the person sees training progress, and the run is parsed afterwards.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        sys.stderr.write(line)
        lines.append(line)
    return subprocess.CompletedProcess(cmd, proc.wait(), "".join(lines), "")


def remote_url() -> str:
    """The default remote's URL (for messages), or '' when none is configured."""
    out = dvc("remote", "list", capture=True).stdout
    default = dvc("remote", "default", capture=True).stdout.strip()
    for line in out.splitlines():
        # `local   /root/.cache/...  (default)`: columns separated by runs of spaces or tabs.
        fields = line.split()
        if fields and fields[0] == default:
            return fields[1]
    return ""


def lock_changed() -> bool:
    """True when dvc.lock differs from the committed one (or is untracked)."""
    return bool(git("status", "--porcelain", "--", "dvc.lock", default=""))


def reproduce(*, locked: bool) -> ReproRecord:
    """Pull what the remote has, run what it lacks, push what was run; return the record."""
    url = remote_url()
    with step(f"dvc repro --pull (remote: {url or 'none configured'})"):
        result = dvc("repro", "--pull")
    if result.returncode != 0:
        raise UserError("`dvc repro --pull` failed; see its output above.")
    ran = ran_stages(result.stdout)
    trained = "train" in ran
    if trained:
        say(f"trained here: the remote ({url or 'none'}) had no model for this dvc.lock")
    elif ran:
        say(f"ran {', '.join(ran)}: the remote lacked their outputs or their inputs changed")
    else:
        say("nothing trained: every output dvc.lock records is in the workspace (pulled from the remote if missing)")
    pushed = False
    if url:
        # Always: a workspace trained before the remote existed (or by plain `dvc repro`) still
        # fills it. DVC sends only what the remote lacks.
        with step(f"dvc push (to {url})"):
            pushed = dvc("push").returncode == 0
        if not pushed:
            raise UserError(f"`dvc push` to {url} failed; see above. Fix the remote, then run this again.")
    changed = lock_changed()
    record: ReproRecord = {
        "ran": ran,
        "trained": trained,
        "pushed": pushed,
        "remote": url,
        "dvc_lock_changed": changed,
        "metrics": json.loads(METRICS.read_text()),
    }
    write_repro(record)
    if changed:
        why = "the pipeline's outputs on this machine differ from what the commit's dvc.lock records"
        if locked:
            raise UserError(
                f"{why} (`git diff dvc.lock` shows which). This run is locked (CI): check the data and "
                "params, or pull the committed outputs from the remote that has them (`dvc pull`)."
            )
        say(f"{why}: review `git diff dvc.lock` and commit it")
    return record


def main() -> None:
    """`python -m ci.model.repro [--locked]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locked", action="store_true", help="fail when dvc.lock changes (CI sets this)")
    args = parser.parse_args()
    reproduce(locked=locked_mode(args.locked))


if __name__ == "__main__":
    main_guard(main)
