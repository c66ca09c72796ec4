"""The gate job: pass only when every job it needs succeeded (the one check to require on main).

GitHub marks a job skipped when a job it needs failed, and a skipped required check counts as
passed: requiring each job by name would let a failure through and breaks whenever a matrix
changes. The gate job runs always (`if: always()`), gets `toJSON(needs)` in the NEEDS variable
and fails unless every result is `success`. Standard library only (the runner's own python3).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def gate(needs: dict[str, dict], allow_skipped: frozenset[str] = frozenset()) -> list[str]:
    """The jobs that did not succeed, as `name (result)`; empty when the gate passes."""
    if not needs:
        return ["(no job: the gate needs at least one job to check)"]
    bad = []
    for name, job in sorted(needs.items()):
        result = job.get("result", "unknown")
        if result != "success" and not (result == "skipped" and name in allow_skipped):
            bad.append(f"{name} ({result})")
    return bad


def main(argv: list[str] | None = None) -> int:
    """`NEEDS='${{ toJSON(needs) }}' python3 ci/runner/gate.py [--allow-skipped JOB ...]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow-skipped", nargs="*", default=[], metavar="JOB", help="jobs that may be skipped")
    args = parser.parse_args(argv)
    try:
        needs = json.loads(os.environ["NEEDS"])
    except (KeyError, ValueError):
        print("error: set NEEDS to the JSON of the `needs` context (`NEEDS: ${{ toJSON(needs) }}`).", file=sys.stderr)
        return 2
    for name, job in sorted(needs.items()):
        print(f"{name}: {job.get('result', 'unknown')}")
    bad = gate(needs, frozenset(args.allow_skipped))
    if bad:
        print(f"gate: failed: {', '.join(bad)}; fix those jobs (see their logs) and re-run.", file=sys.stderr)
        return 1
    print(f"gate: passed ({len(needs)} jobs succeeded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
