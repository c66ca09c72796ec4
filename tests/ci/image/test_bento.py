"""The pieces that make a Bento depend only on its inputs, and the checks before a stored one is reused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from ci.image import bento
from ci.image.bento import EPOCH, bento_version, normalize_modes, strip_times
from ci.project import ROOT, BentoSpec, UserError, bento_spec, load_manifest, tree_digest


def test_strip_times_sets_every_creation_time_to_the_epoch(tmp_path):
    """Top-level and nested creation_time values are replaced; other keys stay."""
    yaml_file = tmp_path / "bento.yaml"
    yaml_file.write_text(
        "name: x\ncreation_time: '2026-01-02T03:04:05+00:00'\nmodels:\n- tag: m:1\n  creation_time: now\n"
    )
    strip_times(tmp_path)
    text = yaml_file.read_text()
    assert text.count(f"creation_time: '{EPOCH}'") == 2
    assert "name: x" in text
    assert "2026" not in text


def test_normalize_modes_makes_files_world_readable(tmp_path):
    """0600 files from BentoML become 0644 so the image's non-root user can read them."""
    secret = tmp_path / "d" / "model.yaml"
    secret.parent.mkdir()
    secret.write_text("x")
    secret.chmod(0o600)
    normalize_modes(tmp_path)
    assert oct(secret.stat().st_mode & 0o777) == "0o644"
    assert oct(secret.parent.stat().st_mode & 0o777) == "0o755"


def test_tree_digest_depends_on_content_and_names_not_times(tmp_path):
    """Touching files keeps the digest; changing a byte or a name changes it."""
    (tmp_path / "a.txt").write_text("one")
    first = tree_digest(tmp_path)
    os.utime(tmp_path / "a.txt", (1, 1))
    assert tree_digest(tmp_path) == first
    (tmp_path / "a.txt").write_text("two")
    assert tree_digest(tmp_path) != first
    (tmp_path / "a.txt").rename(tmp_path / "b.txt")
    assert tree_digest(tmp_path) != first


def test_bento_version_joins_model_and_source_hashes():
    """The version is the model's content hash plus 8 hex of the source hash."""
    assert bento_version("0123456789abcdef", "fedcba98" + "0" * 56) == "0123456789abcdef-fedcba98"


def test_sources_are_the_service_and_params_only():
    """The Bento gets the service package and params.yaml, nothing from build/ or tests/."""
    names = {p.relative_to(ROOT).as_posix() for p in bento_spec().source_files()}
    assert "bentos/classifier/service.py" in names
    assert "params.yaml" in names
    assert not any(n.startswith(("build/", "tests/", "pipeline/")) for n in names)


MODEL_BYTES = b"weights"
MANIFEST = {
    "name": "clf",
    "version": "0123456789abcdef",
    "sha256": hashlib.sha256(MODEL_BYTES).hexdigest(),
    "model_file": "model.onnx",
}
MODEL_TAG = "clf:0123456789abcdef"


@pytest.fixture(name="checkout")
def fixture_checkout(tmp_path) -> BentoSpec:
    """A project's pipeline outputs (models/model.onnx and the manifest that hashes it), plugged in by a spec."""
    root = tmp_path / "checkout"
    (root / "models" / "classifier").mkdir(parents=True)
    (root / "models" / "model.onnx").write_bytes(MODEL_BYTES)
    (root / "models" / "manifest.json").write_text(json.dumps(MANIFEST))
    return BentoSpec(
        root=root,
        name="svc",
        service="bentos.svc:Svc",
        sources=("bentos/*.py",),
        dockerfile=root / "Dockerfile",
        framework="onnx",
        description="a test model",
    )


class FakeStore:
    """BentoML's model store API as ci/image/bento.py uses it (get, create, delete), over a directory."""

    class NotFound(Exception):
        """bentoml.exceptions.NotFound."""

    def __init__(self, root: Path):
        self.root = root
        self.models = self  # bentoml.models.get/create/delete
        self.exceptions = SimpleNamespace(NotFound=self.NotFound)
        self.deleted: list[str] = []
        self.created: list[str] = []

    def _model(self, path: Path) -> SimpleNamespace:
        return SimpleNamespace(path=str(path), path_of=lambda name: str(path / name))

    def get(self, tag: str) -> SimpleNamespace:
        path = self.root / tag.replace(":", "/")
        if not path.is_dir():
            raise self.NotFound(tag)
        return self._model(path)

    @contextmanager
    def create(self, tag: str, **_: object) -> Iterator[SimpleNamespace]:
        path = self.root / tag.replace(":", "/")
        path.mkdir(parents=True)
        self.created.append(tag)
        yield self._model(path)

    def delete(self, tag: str) -> None:
        shutil.rmtree(self.root / tag.replace(":", "/"))
        self.deleted.append(tag)


@pytest.fixture(name="store")
def fixture_store(tmp_path, monkeypatch, checkout) -> FakeStore:
    """An empty fake BentoML store that ci/image/bento.py uses instead of BentoML's."""
    fake = FakeStore(tmp_path / "store")
    monkeypatch.setattr(bento, "_bentoml", lambda: fake)
    return fake


def test_a_stored_model_that_matches_the_manifest_is_reused(store, checkout):
    """Imported once, the model is found again and reused as is: nothing deleted, nothing created twice."""
    assert bento.import_model(MANIFEST, checkout) == MODEL_TAG
    assert bento.import_model(MANIFEST, checkout) == MODEL_TAG
    assert store.created == [MODEL_TAG]
    assert store.deleted == []


def test_a_tampered_stored_model_is_imported_again(store, checkout, capsys):
    """A stored model.onnx that no longer has the manifest's sha256 is deleted and imported again, and said so."""
    bento.import_model(MANIFEST, checkout)
    (store.root / "clf" / "0123456789abcdef" / "model.onnx").write_bytes(b"tampered")
    bento.import_model(MANIFEST, checkout)
    assert store.deleted == [MODEL_TAG]
    assert (store.root / "clf" / "0123456789abcdef" / "model.onnx").read_bytes() == MODEL_BYTES
    assert f"the stored model {MODEL_TAG} holds a model.onnx with sha256" in capsys.readouterr().err


def test_stored_model_problems_name_what_differs(tmp_path, checkout):
    """A stored model is the manifest's only with both files, the model's sha256, and the same manifest bytes."""
    stored = tmp_path / "stored"
    stored.mkdir()

    def problem(stored: Path) -> str | None:
        return bento.stored_model_problem(stored, MANIFEST, checkout.manifest_file)

    assert problem(stored) == "lacks model.onnx or manifest.json"
    (stored / "model.onnx").write_bytes(MODEL_BYTES)
    (stored / "manifest.json").write_text(json.dumps(MANIFEST))
    assert problem(stored) is None
    (stored / "manifest.json").write_text("{}")
    assert problem(stored) == "holds another manifest.json than the checkout's"
    (stored / "model.onnx").write_bytes(b"other")
    assert problem(stored).startswith("holds a model.onnx with sha256 ")


def _stored_bento(root: Path, model_tag: str, sources: dict[str, str]) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "bento.yaml").write_text(f"name: svc\nmodels:\n- tag: {model_tag}\n  module: ''\n")
    (root / "src" / "bentofile.yaml").write_text("models:\n- tag: anything\n")
    for name, text in sources.items():
        (root / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "src" / name).write_text(text)
    return root


@pytest.fixture(name="sources")
def fixture_sources(tmp_path) -> dict[str, Path]:
    """Two service sources of a checkout, by their path inside the Bento's src/."""
    files = {"bentos/classifier/service.py": "SERVICE = 1\n", "params.yaml": "a: 1\n"}
    out = {}
    for name, text in files.items():
        path = tmp_path / "repo" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out[name] = path
    return out


def test_a_stored_bento_of_these_sources_and_model_passes(tmp_path, sources):
    """Same sources, byte for byte, and the manifest's model: the stored Bento may be reused."""
    stored = _stored_bento(tmp_path / "b", MODEL_TAG, {n: p.read_text() for n, p in sources.items()})
    assert bento.stored_bento_problem(stored, MODEL_TAG, sources) is None


def test_a_stored_bento_with_other_sources_or_model_is_named(tmp_path, sources):
    """A changed or extra source file, or another model, makes the stored Bento unusable, and says why."""
    texts = {n: p.read_text() for n, p in sources.items()}
    changed = _stored_bento(tmp_path / "changed", MODEL_TAG, {**texts, "params.yaml": "a: 2\n"})
    assert bento.stored_bento_problem(changed, MODEL_TAG, sources) == (
        "has sources that differ from the checkout (params.yaml)"
    )
    extra = _stored_bento(tmp_path / "extra", MODEL_TAG, {**texts, "bentos/classifier/helper.py": "X = 1\n"})
    assert "(bentos/classifier/helper.py)" in bento.stored_bento_problem(extra, MODEL_TAG, sources)
    other = _stored_bento(tmp_path / "other", "clf:ffffffffffffffff", texts)
    assert bento.stored_bento_problem(other, MODEL_TAG, sources) == f"serves clf:ffffffffffffffff, not {MODEL_TAG}"


def test_a_stored_bento_that_differs_is_deleted_and_not_reused(tmp_path, checkout, capsys):
    """stored_bento returns None for a Bento that fails the check, after deleting it from the store."""
    stored = _stored_bento(tmp_path / "b", "clf:ffffffffffffffff", {})
    deleted = []
    fake = SimpleNamespace(
        get=lambda tag: SimpleNamespace(path=str(stored)),
        bentos=SimpleNamespace(delete=deleted.append),
        exceptions=SimpleNamespace(NotFound=KeyError),
    )
    assert bento.stored_bento(fake, "svc:1", MODEL_TAG, checkout) is None
    assert deleted == ["svc:1"]
    assert "the stored Bento svc:1 serves clf:ffffffffffffffff" in capsys.readouterr().err


def test_a_manifest_without_a_key_the_build_reads_is_one_sentence(tmp_path):
    """A manifest from another pipeline that lacks model_file (or any key the build reads) names what to add."""
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({k: v for k, v in MANIFEST.items() if k != "model_file"}))
    with pytest.raises(UserError, match=r"lacks model_file: .* \(docs/adapting\.md\)"):
        load_manifest(path)
