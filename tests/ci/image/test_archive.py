"""The image hand-over between CI jobs: save once, load and prove it is the recorded image, or say why not.

A fake `docker` (a script that keeps its images in a JSON file) stands in for the engine: `save`
writes the image's reference and ID as the archive, `load` reads them back into the engine.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from ci import records
from ci.image import archive as image_archive
from ci.project import ROOT, UserError, tree_digest

FAKE_DOCKER = """#!{python}
import json, os, sys
from pathlib import Path

state = Path(os.environ["FAKE_DOCKER_STATE"])
images = json.loads(state.read_text()) if state.exists() else {{}}
args = sys.argv[1:]
if args[:2] == ["image", "inspect"]:
    if args[-1] not in images:
        sys.exit("Error: No such image: " + args[-1])
    print(images[args[-1]])
elif args[0] == "save":
    sys.stdout.buffer.write(json.dumps({{"ref": args[1], "id": images[args[1]]}}).encode())
elif args[0] == "load":
    image = json.loads(Path(args[2]).read_text())  # a damaged archive fails here, as docker would
    images[image["ref"]] = image["id"]
    state.write_text(json.dumps(images))
    print("Loaded image: " + image["ref"])
"""


@pytest.fixture(name="engine")
def fixture_engine(tmp_path, monkeypatch) -> dict:
    """A fake docker CLI and its state file, holding the built cpu image."""
    state = tmp_path / "engine.json"
    state.write_text(json.dumps({"r:1-cpu": "sha256:aaa"}))
    cli = tmp_path / "docker"
    cli.write_text(FAKE_DOCKER.format(python=sys.executable))
    cli.chmod(0o755)
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(state))
    return {"cli": str(cli), "state": state}


@pytest.fixture(name="built")
def fixture_built(tmp_path, monkeypatch) -> dict:
    """A build record and its Bento (one executable file) where the build puts them."""
    build = tmp_path / "build"
    bento = build / "bento"
    (bento / "src").mkdir(parents=True)
    (bento / "src" / "service.py").write_text("print('serve')\n")
    (bento / "env").mkdir()
    (bento / "env" / "entrypoint.sh").write_text("#!/bin/sh\n")
    (bento / "env" / "entrypoint.sh").chmod(0o755)
    monkeypatch.setattr(records, "BUILD_DIR", build)
    monkeypatch.setattr(image_archive, "BENTO_DIR", bento)
    record = {"variant": "cpu", "ref": "r:1-cpu", "id": "sha256:aaa", "bento_digest": tree_digest(bento)}
    records.image_path("cpu").write_text(json.dumps(record))
    return record


def fresh_runner(engine: dict, built: dict) -> None:
    """What a later job starts from: an empty engine, no build record, no Bento."""
    engine["state"].write_text("{}")
    records.image_path("cpu").unlink()
    for path in sorted(image_archive.BENTO_DIR.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()


def test_saved_image_loads_on_another_runner_as_the_recorded_image(tmp_path, engine, built):
    """save then load into an empty engine: same image ID, the record and the Bento (modes too) back in place."""
    archives = tmp_path / "images"
    saved = image_archive.save("cpu", archives, docker=engine["cli"])
    assert sorted(p.name for p in archives.iterdir()) == ["cpu.bento.tar", "cpu.json", "cpu.tar"]
    assert saved["archive"]["size"] == (archives / "cpu.tar").stat().st_size
    fresh_runner(engine, built)
    image_archive.load("cpu", archives, docker=engine["cli"])
    assert json.loads(engine["state"].read_text()) == {"r:1-cpu": "sha256:aaa"}
    assert json.loads(records.image_path("cpu").read_text()) == built
    assert tree_digest(image_archive.BENTO_DIR) == built["bento_digest"]


def test_save_refuses_an_image_that_is_not_the_recorded_one(tmp_path, engine, built):
    """The engine's tag points elsewhere (built again since): saving would hand over the wrong image."""
    engine["state"].write_text(json.dumps({"r:1-cpu": "sha256:bbb"}))
    wrong = r"r:1-cpu is sha256:bbb, not the sha256:aaa that .*build/image-cpu.json records: .*nox -s 'build\(cpu\)'"
    with pytest.raises(UserError, match=wrong):
        image_archive.save("cpu", tmp_path / "images", docker=engine["cli"])


def test_save_refuses_a_bento_changed_since_the_build(tmp_path, engine, built):
    """The Bento handed to the scan must be the one the image was built from."""
    (image_archive.BENTO_DIR / "src" / "service.py").write_text("print('changed')\n")
    with pytest.raises(UserError, match="is not the Bento the cpu image was built from"):
        image_archive.save("cpu", tmp_path / "images", docker=engine["cli"])


def test_load_refuses_a_damaged_archive(tmp_path, engine, built):
    """Other bytes than the build job saved (a broken download): refused before docker sees them."""
    archives = tmp_path / "images"
    image_archive.save("cpu", archives, docker=engine["cli"])
    (archives / "cpu.tar").write_bytes(b"truncated")
    with pytest.raises(UserError, match=r"cpu.tar is not the image archive the build job saved .* download it again"):
        image_archive.load("cpu", archives, docker=engine["cli"])


def test_load_refuses_an_archive_of_another_image(tmp_path, engine, built):
    """An archive that loads as another image ID than the record names fails, naming both IDs."""
    archives = tmp_path / "images"
    image_archive.save("cpu", archives, docker=engine["cli"])
    other = json.dumps({"ref": "r:1-cpu", "id": "sha256:ccc"}).encode()
    (archives / "cpu.tar").write_bytes(other)
    handed = json.loads((archives / "cpu.json").read_text())
    handed["archive"] = {"sha256": hashlib.sha256(other).hexdigest(), "size": len(other)}
    (archives / "cpu.json").write_text(json.dumps(handed))
    fresh_runner(engine, built)
    with pytest.raises(UserError, match=r"loads as r:1-cpu = sha256:ccc, not the sha256:aaa the build job recorded"):
        image_archive.load("cpu", archives, docker=engine["cli"])
    assert not records.image_path("cpu").exists()  # no record claims the image was loaded


def test_load_without_an_archive_says_how_to_get_one(tmp_path, engine):
    """Nothing downloaded: the message names the artifact and the way back to building locally."""
    with pytest.raises(
        UserError, match=r"download the build job's `image-cpu` artifact there, or unset IMAGE_ARCHIVE_DIR"
    ):
        image_archive.load("cpu", tmp_path / "empty", docker=engine["cli"])


def test_a_failing_docker_load_is_one_sentence(tmp_path, engine, built):
    """docker's own last line of error, not a traceback."""
    archives = tmp_path / "images"
    image_archive.save("cpu", archives, docker=engine["cli"])
    (archives / "cpu.tar").write_bytes(b"not json")
    handed = json.loads((archives / "cpu.json").read_text())
    handed["archive"] = {"sha256": hashlib.sha256(b"not json").hexdigest(), "size": 8}
    (archives / "cpu.json").write_text(json.dumps(handed))
    with pytest.raises(UserError, match=r"`docker load -i .*cpu.tar` failed: .*JSONDecodeError"):
        image_archive.load("cpu", archives, docker=engine["cli"])


def test_archive_dir_reads_image_archive_dir_relative_to_the_repository():
    """Unset: build/images; relative: under the repository; absolute: as given."""
    assert image_archive.archive_dir({}) == image_archive.ARCHIVE_DIR
    assert image_archive.archive_dir({"IMAGE_ARCHIVE_DIR": "build/images"}) == ROOT / "build" / "images"
    assert image_archive.archive_dir({"IMAGE_ARCHIVE_DIR": "/tmp/x"}) == Path("/tmp/x")


def test_variants_in_lists_only_known_variants(tmp_path):
    """Records of known variants count; other JSON files in the directory do not."""
    for name in ("cuda.json", "cpu.json", "notes.json", "cpu.tar"):
        (tmp_path / name).write_text("{}")
    assert image_archive.variants_in(tmp_path) == ["cpu", "cuda"]
