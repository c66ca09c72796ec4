"""Fixtures that start the built image on a real Docker engine and talk to it over real HTTP."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

from ci.project import GOLDEN, ROOT, UserError, load_manifest
from ci.records import load_image
from tests.contract.containers import Container, start_container, stop_container


@pytest.fixture(scope="session", name="image")
def fixture_image() -> dict:
    """The record of the image under test: IMAGE_VARIANT (set by `nox -s 'test(<variant>)'`), default cpu."""
    try:
        return load_image(os.environ.get("IMAGE_VARIANT", "cpu"))
    except UserError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session", name="server")
def fixture_server(docker: str, image: dict) -> Iterator[Container]:
    container = start_container(docker, image["ref"], image["port"])
    yield container
    stop_container(container)


@pytest.fixture(scope="session", name="client")
def fixture_client(server: Container) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session", name="golden")
def fixture_golden() -> dict:
    if not GOLDEN.is_file():
        pytest.fail(f"{GOLDEN.relative_to(ROOT)} is missing: run `dvc repro`.")
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="session", name="manifest")
def fixture_manifest() -> dict:
    return load_manifest()
