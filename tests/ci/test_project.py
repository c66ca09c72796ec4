"""Shared helpers: time never comes from the clock, errors are sentences, tables line up."""

from __future__ import annotations

import pytest
import yaml

from ci import project
from ci.project import UserError


def test_source_date_epoch_prefers_the_environment(monkeypatch):
    """SOURCE_DATE_EPOCH wins over git."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234")
    assert project.source_date_epoch() == 1234


def test_source_date_epoch_falls_back_to_the_last_commit(monkeypatch):
    """Without the variable it is the last commit's time, which is in the past."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.setattr(project, "git", lambda *a, default="": "1700000000")
    assert project.source_date_epoch() == 1700000000


def test_run_turns_a_missing_tool_into_a_user_error():
    """A command that does not exist is a one-sentence UserError, not a traceback."""
    with pytest.raises(project.UserError, match="is not installed"):
        project.run(["definitely-not-a-tool-here"])


def test_run_turns_a_failure_into_a_user_error():
    """A failing command names itself and its exit code."""
    with pytest.raises(project.UserError, match="exit code 3"):
        project.run(["sh", "-c", "exit 3"])


def test_section_names_the_missing_section(monkeypatch):
    """A missing params.yaml section says which one."""
    monkeypatch.setattr(project, "params", lambda: {"serve": {}})
    with pytest.raises(project.UserError, match="no `image` section"):
        project.section("image")


def test_table_aligns_columns():
    """Columns are padded to the widest cell."""
    assert project.table([("a", "bb")], ("x", "y")).splitlines() == ["x  y", "-  --", "a  bb"]


def test_human_bytes():
    """Sizes are shown in binary units."""
    assert project.human_bytes(512) == "512 B"
    assert project.human_bytes(1536) == "1.5 KiB"
    assert project.human_bytes(3 * 1024**3) == "3.0 GiB"


def test_uncommitted_paths_of_a_clean_checkout_are_none(git_repo, tmp_path):
    """A checkout equal to HEAD has nothing uncommitted; ignored outputs (build/) do not count."""
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "image-cpu.json").write_text("{}")
    assert project.uncommitted_paths() == []


def test_uncommitted_paths_name_changed_and_untracked_files(git_repo, tmp_path):
    """A changed tracked file, an untracked one deep in a new directory, and a rename, each by its path."""
    (tmp_path / "params.yaml").write_text("a: 2\n")
    helper = tmp_path / "bentos" / "classifier" / "helper.py"
    helper.parent.mkdir(parents=True)
    helper.write_text("HELP = 1\n")
    (tmp_path / ".gitignore").rename(tmp_path / "my ignore")
    git_repo("add", "--all", "--", ".gitignore", "my ignore")
    assert sorted(project.uncommitted_paths()) == ["bentos/classifier/helper.py", "my ignore", "params.yaml"]


@pytest.mark.parametrize(
    ("env", "flag", "locked"),
    [
        ({}, False, False),
        ({"CI": "true"}, False, True),
        ({"BASE_LOCKED": "1"}, False, True),
        ({}, True, True),
        ({"CI": "false"}, False, False),
    ],
    ids=["terminal", "ci", "base-locked", "flag", "ci-false"],
)
def test_locked_mode(monkeypatch, env, flag, locked):
    """CI, BASE_LOCKED or --locked make a build locked; a plain terminal run may refresh."""
    for name in ("CI", "BASE_LOCKED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert project.locked_mode(flag) is locked


def test_the_project_images_are_named_in_one_place():
    """The base's reference is recognized by the same rule that makes it; other names are not bases."""
    sha = "d7c8d219c73234cd" + "0" * 48
    ref = project.base_ref("acme/clf", sha)
    assert ref == "acme/clf-base:d7c8d219c73234cd"
    assert project.is_base_ref(ref, "acme/clf")
    assert project.build_repository("acme/clf") == "acme/clf-build"
    for other in (
        "acme/clf-base:latest",
        "acme/clf:d7c8d219c73234cd",
        "evil/clf-base:d7c8d219c73234cd",
        "acme/clf-base:abc",
    ):
        assert not project.is_base_ref(other, "acme/clf"), other


def plug_in(root, **bento):
    """A project at root whose params.yaml `bento` is the checkout's with `bento` overrides (None removes a key)."""
    params = yaml.safe_load((project.ROOT / "params.yaml").read_text())
    params["bento"] = {k: v for k, v in {**params["bento"], **bento}.items() if v is not None}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for name in ("bentos/__init__.py", "bentos/classifier/service.py", "bentos/classifier/Dockerfile"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def test_bento_spec_reads_the_checkouts_plug_in():
    """The checkout's model plugs in through params.yaml `bento`: its service, sources, Dockerfile and label."""
    spec = project.bento_spec()
    assert spec.service == "bentos.classifier.service:Classifier"
    assert spec.dockerfile == project.ROOT / "bentos" / "classifier" / "Dockerfile"
    assert spec.framework == "onnx"
    assert spec.name == project.section("serve")["service"]
    assert spec.model_file({"model_file": project.SERVED_MODEL.name}) == project.SERVED_MODEL
    assert "\n" not in spec.description


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"framework": None}, r"`bento` lacks framework: add them \(see docs/adapting.md\)"),
        ({"service": "bentos.classifier.service"}, r"write it as module:Class"),
        ({"service": "bentos.other:Svc"}, r"names the module bentos.other, which is not a file"),
        ({"sources": ["bentos/nothing/*.py"]}, r"`bento.sources` bentos/nothing/\*.py match no file"),
        ({"sources": "bentos/*.py"}, r"must be a list"),
        ({"dockerfile": "Dockerfile.missing"}, r"`bento.dockerfile` Dockerfile.missing is not a file"),
    ],
)
def test_bento_spec_names_what_is_wrong_in_one_sentence(tmp_path, override, message):
    """Each mistake in params.yaml `bento` is one UserError that names the key and points to docs/adapting.md."""
    with pytest.raises(UserError, match=message):
        project.bento_spec(plug_in(tmp_path, **override))


def test_bento_spec_without_the_section_says_to_add_it(tmp_path):
    """A params.yaml from before the plug-in point (no `bento`) is told what to add."""
    (tmp_path / "params.yaml").write_text("serve: {service: s}\n")
    with pytest.raises(UserError, match="has no `bento` section: add one"):
        project.bento_spec(tmp_path)
