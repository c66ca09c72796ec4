"""The reproduce check's clean state, against a fake docker CLI: it fails instead of building on leftovers."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from ci.image import reproduce
from ci.project import UserError, section

REPOSITORY = section("image")["repository"]
FINAL, BUILD, BASE, OTHER = (f"sha256:{c * 64}" for c in "abcd")
# A fake `docker` that answers from a JSON state file next to it and records every call there.
FAKE_DOCKER = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path

    state_file = Path(__file__).with_name("state.json")
    state = json.loads(state_file.read_text())
    args = sys.argv[1:]
    state["calls"].append(args)
    out, err, code = "", "", 0
    if " ".join(args[:2]) in state["fail"]:
        err, code = state["fail"][" ".join(args[:2])], 1
    elif args[:2] == ["image", "ls"]:
        out = "".join(f"{image}\\n" for image in state["images"].get(args[-1], []))
    elif args[:2] == ["rmi", "-f"]:
        if not state["rmi_leaves_images"]:
            state["images"] = {repo: [i for i in ids if i not in args[2:]] for repo, ids in state["images"].items()}
    elif args[:2] == ["builder", "prune"]:
        state["pruned"] = True
    else:
        err, code = f"fake docker: unexpected {args}", 2
    state_file.write_text(json.dumps(state))
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(code)
    """
)


class FakeDocker:
    """A docker CLI on disk whose images, failures and calls a test sets and reads."""

    def __init__(self, directory: Path) -> None:
        (directory / "fake_docker.py").write_text(FAKE_DOCKER)
        self.path = directory / "docker"
        # A shell wrapper, so the shebang stays short whatever the path of this Python.
        self.path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{directory / "fake_docker.py"}" "$@"\n')
        self.path.chmod(0o755)
        self.state_file = directory / "state.json"
        self.write(
            images={
                REPOSITORY: [FINAL],
                f"{REPOSITORY}-build": [BUILD],
                f"{REPOSITORY}-base": [BASE],
                "someone/else": [OTHER],
            },
            fail={},
            rmi_leaves_images=False,
            pruned=False,
            calls=[],
        )

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def write(self, **changes: object) -> None:
        state = self.state if self.state_file.exists() else {}
        self.state_file.write_text(json.dumps({**state, **changes}))


@pytest.fixture(name="fake_docker")
def fixture_fake_docker(tmp_path) -> FakeDocker:
    """A fake docker holding one image in each of the project's repositories and one of another project."""
    return FakeDocker(tmp_path)


def test_removes_every_project_image_and_prunes_the_cache(fake_docker):
    """The final, build and base images go, the build cache is pruned; other projects' images stay."""
    reproduce.remove_project_images(str(fake_docker.path))
    state = fake_docker.state
    assert state["images"]["someone/else"] == [OTHER]
    assert not any(state["images"][repo] for repo in state["images"] if repo.startswith(REPOSITORY))
    assert state["pruned"]
    assert ["rmi", "-f", *sorted([FINAL, BUILD, BASE])] in state["calls"]


def test_lists_again_after_removing(fake_docker):
    """The images are listed once more after rmi and prune, to prove that none is left before building."""
    reproduce.remove_project_images(str(fake_docker.path))
    verbs = [" ".join(call[:2]) for call in fake_docker.state["calls"]]
    assert verbs == ["image ls"] * 3 + ["rmi -f", "builder prune"] + ["image ls"] * 3


def test_no_images_means_no_rmi_but_still_a_prune(fake_docker):
    """With no project image there is nothing to remove (`docker rmi -f` without IDs fails), but the cache goes."""
    fake_docker.write(images={})
    reproduce.remove_project_images(str(fake_docker.path))
    verbs = [" ".join(call[:2]) for call in fake_docker.state["calls"]]
    assert "rmi -f" not in verbs
    assert fake_docker.state["pruned"]


def test_a_failed_rmi_stops_the_check(fake_docker):
    """When `docker rmi -f` fails, the error names the command and docker's message, and says what to do."""
    message = "Error response from daemon: conflict: unable to delete aaaa (cannot be forced) - image is being used"
    fake_docker.write(fail={"rmi -f": message})
    with pytest.raises(UserError) as caught:
        reproduce.remove_project_images(str(fake_docker.path))
    text = str(caught.value)
    assert "`docker rmi -f` on 3 images failed" in text
    assert message in text
    assert text.endswith(
        "Stop and remove the containers that use the project's images (`docker ps -a`), "
        "then run the reproduce check again."
    )
    assert not fake_docker.state["pruned"]


def test_a_failed_prune_stops_the_check(fake_docker):
    """When `docker builder prune -af` fails, the second build could hit the cache: the check stops."""
    fake_docker.write(fail={"builder prune": "Error response from daemon: a prune operation is already running"})
    with pytest.raises(UserError, match=r"`docker builder prune -af` failed: .*a prune operation is already running"):
        reproduce.remove_project_images(str(fake_docker.path))


def test_images_left_after_a_successful_rmi_stop_the_check(fake_docker):
    """rmi that exits 0 but leaves an image behind is caught by listing again; the error names the images."""
    fake_docker.write(rmi_leaves_images=True)
    with pytest.raises(UserError, match=r"3 of the project's images are still in the engine") as caught:
        reproduce.remove_project_images(str(fake_docker.path))
    assert FINAL in str(caught.value)
    assert str(caught.value).endswith("then run the reproduce check again.")


def test_a_failed_listing_stops_the_check(fake_docker):
    """When docker cannot list images, nothing is known about what is left: the error says to check the engine."""
    fake_docker.write(fail={"image ls": "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."})
    with pytest.raises(UserError, match=r"`docker image ls -q --no-trunc .*` failed: Cannot connect") as caught:
        reproduce.remove_project_images(str(fake_docker.path))
    assert "`docker info`" in str(caught.value)
