"""Two clean builds of an image variant give the same image ID, byte for byte.

Each build runs in a fresh clone of the last commit, gets its model as a user's clone does (pulled
from the DVC remote, trained only when no remote has it), and starts with the project's
images and the BuildKit cache removed (ci/image/reproduce.py). IMAGE_VARIANT picks the variant
(`nox -s 'reproduce(cuda)'` sets it); a failure lists the layers and files that differ.
"""

from __future__ import annotations

import json
import os

import pytest

from ci.image.reproduce import reproduce
from ci.project import BUILD_DIR

pytestmark = pytest.mark.reproducibility


def test_two_clean_builds_give_the_same_image():
    """Same commit, other directory, later time, no caches: same image ID, model and Bento."""
    variant = os.environ.get("IMAGE_VARIANT", "cpu")
    first, second, differences = reproduce(variant)
    # Keep the evidence: both IDs, for the summary and the release notes.
    BUILD_DIR.mkdir(exist_ok=True)
    (BUILD_DIR / f"reproduce-{variant}.json").write_text(
        json.dumps({"variant": variant, "first": first.record["id"], "second": second.record["id"]}, indent=2) + "\n"
    )
    assert differences == [], "\n".join(differences)
    assert first.record["id"] == second.record["id"]
    assert first.record["bento_digest"] == second.record["bento_digest"]
    assert first.record["labels"] == second.record["labels"]
