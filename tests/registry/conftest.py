"""Fixtures: the docker CLI, the built CPU image, and fresh registries that are stopped (and untagged) at the end."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator

import pytest

from ci.project import UserError
from ci.records import load_image
from tests.registry.registries import Registry


@pytest.fixture(scope="session", name="image")
def fixture_image(docker: str) -> dict:
    """The record of the built CPU image, the one every test pushes."""
    try:
        record = load_image("cpu")
    except UserError as exc:
        pytest.fail(str(exc))
    if subprocess.run([docker, "image", "inspect", record["id"]], capture_output=True).returncode != 0:
        pytest.fail(f"the image {record['id']} of build/image-cpu.json is gone: run `nox -s 'build(cpu)'`.")
    return record


@pytest.fixture(scope="session", name="untag_afterwards")
def fixture_untag_afterwards(docker: str) -> Iterator[list[str]]:
    """Registry hosts whose names for images the tests created; removed at the end (names only, never an image)."""
    hosts: list[str] = []
    yield hosts
    listed = subprocess.run(
        [docker, "image", "ls", "--digests", "--format", "{{json .}}"], capture_output=True, text=True
    ).stdout
    ids = {row["ID"] for row in map(json.loads, listed.splitlines()) if row["Repository"].split("/", 1)[0] in hosts}
    for image_id in ids:
        inspect = json.loads(subprocess.run([docker, "image", "inspect", image_id], capture_output=True).stdout)[0]
        names = (inspect.get("RepoTags") or []) + (inspect.get("RepoDigests") or [])
        ours = [name for name in names if name.split("/", 1)[0] in hosts]
        # Untag only while a name of someone else's keeps the image: removing its last name would
        # delete an image that is not ours (the build's tags are what keep it).
        if any(name.split("/", 1)[0] not in hosts for name in inspect.get("RepoTags") or []):
            for name in ours:
                subprocess.run([docker, "image", "rm", "--no-prune", name], capture_output=True)


@pytest.fixture(scope="session", name="new_registry")
def fixture_new_registry(tmp_path_factory, untag_afterwards: list[str]) -> Iterator[Callable[[str], Registry]]:
    """A factory of fresh, empty registries; all are stopped at the end of the session."""
    started: list[Registry] = []

    def make(name: str) -> Registry:
        registry = Registry(tmp_path_factory.mktemp(name))
        started.append(registry)
        untag_afterwards.append(registry.host)
        return registry

    yield make
    for registry in started:
        registry.stop()
