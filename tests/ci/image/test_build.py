"""The image build context: code and model apart, so a new model changes one layer."""

from __future__ import annotations

import pytest

from ci.image import build as build_image
from ci.image.build import oci_labels, split_bento
from ci.project import ROOT, UserError, sha256_file


def test_split_bento_keeps_model_bound_files_out_of_the_code_layer(tmp_path):
    """src/ (minus bentofile.yaml) goes to code/; bento.yaml, models/, apis/ and bentofile.yaml to model/."""
    bento = tmp_path / "bento"
    for rel in ("src/service.py", "src/bentofile.yaml", "bento.yaml", "models/m/1/model.keras", "apis/openapi.yaml"):
        (bento / rel).parent.mkdir(parents=True, exist_ok=True)
        (bento / rel).write_text(rel)
    context = split_bento(bento, tmp_path / "context")
    code = sorted(p.relative_to(context / "code").as_posix() for p in (context / "code").rglob("*") if p.is_file())
    model = sorted(p.relative_to(context / "model").as_posix() for p in (context / "model").rglob("*") if p.is_file())
    assert code == ["src/service.py"]
    assert model == ["apis/openapi.yaml", "bento.yaml", "models/m/1/model.keras", "src/bentofile.yaml"]


def test_labels_take_created_from_the_epoch_not_the_clock():
    """org.opencontainers.image.created is SOURCE_DATE_EPOCH in RFC 3339; the model is labelled."""
    labels = oci_labels(version="v1", model_tag="m:1", model_sha="ab" * 32, bento_tag="b:v1", epoch=0)
    assert labels["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"
    assert labels["org.opencontainers.image.version"] == "v1"
    assert labels["io.github.ml-model-image.model.sha256"] == "ab" * 32


def test_labels_name_the_base_lock_and_the_dvc_lock():
    """The image says which base-packages.lock and dvc.lock it was built from, by their sha256."""
    labels = oci_labels(version="v1", model_tag="m:1", model_sha="ab" * 32, bento_tag="b:v1", epoch=0)
    assert labels["io.github.ml-model-image.base.lock.sha256"] == sha256_file(ROOT / "base-packages.lock")
    assert labels["io.github.ml-model-image.dvc.lock.sha256"] == sha256_file(ROOT / "dvc.lock")


def test_labels_set_are_the_labels_listed():
    """Every label the build sets is in build_image.LABELS (what push and the contract tests read), and no other."""
    labels = oci_labels(version="v1", model_tag="m:1", model_sha="ab" * 32, bento_tag="b:v1", epoch=0)
    assert sorted(labels) == sorted(build_image.LABELS)
    assert len(set(build_image.LABELS)) == len(build_image.LABELS)


def test_a_missing_lock_is_one_sentence(tmp_path, monkeypatch):
    """Without dvc.lock (or base-packages.lock) there is nothing to label the image with: restore it."""
    monkeypatch.setattr(build_image, "ROOT", tmp_path)
    with pytest.raises(UserError, match=r"dvc\.lock is missing: restore it from git"):
        build_image.lock_sha256(tmp_path / "dvc.lock")


def test_noxfile_variants_are_the_params_variants():
    """noxfile.py cannot read YAML before its environment exists, so it repeats the variant names: keep them equal."""
    import ast

    from ci.image.build import VARIANTS

    tree = ast.parse((ROOT / "noxfile.py").read_text())
    assigned = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "VARIANTS"
    )
    assert ast.literal_eval(assigned) == list(VARIANTS)


def test_revision_of_a_clean_checkout_is_the_commit(git_repo, tmp_path):
    """Built from a checkout equal to HEAD (ignored outputs aside), the image names that commit."""
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "wheel.whl").write_text("output, not source")
    assert build_image.revision() == git_repo("rev-parse", "HEAD")


def test_revision_marks_changed_tracked_files_dirty(git_repo, tmp_path):
    """A tracked file that differs from HEAD makes the revision <commit>-dirty."""
    (tmp_path / "params.yaml").write_text("a: 2\n")
    assert build_image.revision() == f"{git_repo('rev-parse', 'HEAD')}-dirty"


def test_revision_marks_untracked_sources_dirty(git_repo, tmp_path):
    """A new, untracked, not ignored file (a helper the Bento would ship) makes the revision <commit>-dirty."""
    helper = tmp_path / "bentos" / "classifier" / "helper.py"
    helper.parent.mkdir(parents=True)
    helper.write_text("HELP = 1\n")
    assert build_image.revision() == f"{git_repo('rev-parse', 'HEAD')}-dirty"
