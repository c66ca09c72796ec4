"""Refuse to publish an image that is not the one tested: compare two build records.

The push job rebuilds its variant rather than carrying gigabytes of image from the test job; the
build is reproducible, so the rebuilt image has the same ID (the digest of its config, which names
every layer) as the tested one. This compares build/image-<variant>.json from the test job with
the push job's and fails, saying what differs, when they are not the same image.
Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Fields that explain a difference, in the order a reader wants them.
EXPLAIN = ("model_tag", "bento", "bento_digest", "base", "rootfs_layers")


def differences(tested: dict, built: dict) -> list[str]:
    """Why `built` is not the `tested` image; empty when both have the same image ID."""
    if tested.get("id") and tested.get("id") == built.get("id"):
        return []
    lines = [f"image ID: tested {tested.get('id')}, rebuilt {built.get('id')}"]
    lines += [
        f"{key}: tested {tested.get(key)}, rebuilt {built.get(key)}"
        for key in EXPLAIN
        if tested.get(key) != built.get(key)
    ]
    return lines


def main(argv: list[str]) -> int:
    """`python ci/workflow_same_image.py TESTED.json BUILT.json`."""
    if len(argv) != 2:
        print(main.__doc__, file=sys.stderr)
        return 2
    try:
        tested, built = (json.loads(Path(path).read_text()) for path in argv)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read an image record ({exc}); did test(...) and the build succeed?", file=sys.stderr)
        return 2
    problems = differences(tested, built)
    if problems:
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        print(
            f"error: the rebuilt {built.get('variant', '')} image is not the tested one, so it is not pushed. "
            "Different model bytes usually mean the two runners' CPUs differ (training is byte-reproducible per "
            "CPU type): re-run all jobs of the workflow; if it persists, run `nox -s reproduce` to find what "
            "is not reproducible.",
            file=sys.stderr,
        )
        return 1
    print(f"same image: {built.get('ref')} {built.get('id')} is the one tested")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
