"""The image build context: code and model apart, so a new model changes one layer."""

from __future__ import annotations

from ci.build_image import oci_labels, split_bento


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


def test_noxfile_variants_are_the_params_variants():
    """noxfile.py cannot read YAML before its environment exists, so it repeats the variant names: keep them equal."""
    import ast

    from ci.build_image import VARIANTS
    from ci.project import ROOT

    tree = ast.parse((ROOT / "noxfile.py").read_text())
    assigned = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "VARIANTS"
    )
    assert ast.literal_eval(assigned) == list(VARIANTS)


def test_revision_marks_uncommitted_changes(monkeypatch):
    """A build from a tree with uncommitted changes is labelled <commit>-dirty, a clean one <commit>."""
    from ci import build_image

    answers = {("rev-parse", "HEAD"): "abc123", ("status", "--porcelain", "--untracked-files=no"): " M params.yaml"}
    monkeypatch.setattr(build_image, "git", lambda *args, default="": answers.get(args, default))
    assert build_image.revision() == "abc123-dirty"
    answers[("status", "--porcelain", "--untracked-files=no")] = ""
    assert build_image.revision() == "abc123"
