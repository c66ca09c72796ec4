"""Turn the DVC pipeline's model into a BentoML model and a Bento whose bytes depend only on inputs.

BentoML writes a random version and creation times into what it stores. Here the model version
is the model's content hash (from models/manifest.json), the Bento version is that hash plus a
hash of the service sources, and every creation_time is set to the Unix epoch, so the same model
and code always give the same Bento (`tree_digest` of build/bento/ proves it).

The store (build/bentoml/) is a cache, and a cache is not trusted: a stored model is reused only when
its files still match models/manifest.json, and a stored Bento only when its sources match the
checkout and it names the manifest's model. Anything else is deleted and made again, and the model
that leaves for the image is hashed once more against the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ci.project import (
    BENTO_DIR,
    BENTOML_HOME,
    ROOT,
    BentoSpec,
    UserError,
    bento_spec,
    load_manifest,
    main_guard,
    say,
    sha256_file,
    tree_digest,
)

# What the model plugs in (the service, its sources, the framework label, the description) comes
# from params.yaml `bento` through ci.project.bento_spec; the model file from the manifest.
EPOCH = "1970-01-01T00:00:00+00:00"
MANIFEST_NAME = "manifest.json"  # stored beside the model file in the BentoML model
CREATION_TIME = re.compile(r"^(\s*creation_time:).*$", re.MULTILINE)


@dataclass(frozen=True)
class BentoBuild:
    """What `build_bento` made."""

    model_tag: str
    bento_tag: str
    path: Path
    digest: str


def sources_digest(spec: BentoSpec) -> str:
    """sha256 over the service sources, the serving lock and this build script (how it builds)."""
    digest = hashlib.sha256()
    files = [(path.relative_to(spec.root), path) for path in [*spec.source_files(), spec.serve_lock]]
    files.append((Path(__file__).resolve().relative_to(ROOT), Path(__file__).resolve()))
    for name, path in files:
        digest.update(f"{name.as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def bento_version(model_version: str, src_digest: str) -> str:
    """`<model content hash>-<source hash>`: a new model or new code is a new Bento, nothing else is."""
    return f"{model_version}-{src_digest[:8]}"


def strip_times(root: Path) -> None:
    """Set every `creation_time` in BentoML's YAML files under `root` to the epoch."""
    for path in sorted(root.rglob("*.yaml")):
        text = path.read_text()
        fixed = CREATION_TIME.sub(lambda m: f"{m.group(1)} '{EPOCH}'", text)
        if fixed != text:
            path.write_text(fixed)


def normalize_modes(root: Path) -> None:
    """Directories 0755, files 0644: BentoML writes some files 0600, which a non-root user in the
    image could not read, and modes are part of an image layer's bytes."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _bentoml():
    # BentoML reads BENTOML_HOME when first imported: a project-local store keeps builds clean.
    os.environ.setdefault("BENTOML_HOME", str(BENTOML_HOME))
    import bentoml

    return bentoml


def stored_model_problem(stored: Path, manifest: dict, manifest_file: Path) -> str | None:
    """Why the stored model at `stored` is not the manifest's model, or None when it is.

    `manifest` is models/manifest.json read, `manifest_file` that file.
    """
    names = (manifest["model_file"], MANIFEST_NAME)
    model, stored_manifest = (stored / name for name in names)
    if not model.is_file() or not stored_manifest.is_file():
        return f"lacks {' or '.join(name for name in names if not (stored / name).is_file())}"
    if (actual := sha256_file(model)) != manifest["sha256"]:
        return f"holds a {names[0]} with sha256 {actual}, not the manifest's {manifest['sha256']}"
    if sha256_file(stored_manifest) != sha256_file(manifest_file):
        return "holds another manifest.json than the checkout's"
    return None


def stored_bento_problem(stored: Path, model_tag: str, sources: Mapping[str, Path]) -> str | None:
    """Why the stored Bento at `stored` is not the one these sources and this model make, or None.

    Its version already names the model and a hash of the sources, but the files behind a version
    in the store can change: compare the service code file by file and the models it names.
    `sources` maps each path inside src/ to the file it must equal.
    """
    bento_yaml = stored / "bento.yaml"
    if not bento_yaml.is_file():
        return "has no bento.yaml"
    models = [entry.get("tag") for entry in (yaml.safe_load(bento_yaml.read_text()) or {}).get("models") or []]
    if models != [model_tag]:
        return f"serves {', '.join(map(str, models)) or 'no model'}, not {model_tag}"
    wanted = {name: sha256_file(path) for name, path in sources.items()}
    src = stored / "src"
    # src/bentofile.yaml is BentoML's record of the build options (the model tag among them, checked above).
    held = {p.relative_to(src).as_posix(): sha256_file(p) for p in src.rglob("*") if p.is_file()}
    held.pop("bentofile.yaml", None)
    if differ := sorted(name for name in wanted.keys() | held.keys() if wanted.get(name) != held.get(name)):
        return f"has sources that differ from the checkout ({', '.join(differ)})"
    return None


def import_model(manifest: dict, spec: BentoSpec) -> str:
    """Put the model file and manifest.json into the BentoML store as name:version (content hash).

    A model already stored under that tag is reused only when its files match the manifest; otherwise
    it is deleted and imported again (and the build says so).
    """
    bentoml = _bentoml()
    tag = f"{manifest['name']}:{manifest['version']}"
    model_file = spec.model_file(manifest)
    if not model_file.is_file():
        raise UserError(f"{model_file} is missing: run `dvc repro` first.")
    if sha256_file(model_file) != manifest["sha256"]:
        raise UserError(f"{model_file} does not match {spec.manifest_file.name}: run `dvc repro`.")
    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        stored = None
    if stored is not None and (problem := stored_model_problem(Path(stored.path), manifest, spec.manifest_file)):
        say(f"the stored model {tag} {problem}: importing it again")
        bentoml.models.delete(tag)
        stored = None
    if stored is None:
        labels, metadata = {"framework": spec.framework}, {"sha256": manifest["sha256"]}
        with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
            shutil.copy2(model_file, model.path_of(manifest["model_file"]))
            shutil.copy2(spec.manifest_file, model.path_of(MANIFEST_NAME))
        stored = bentoml.models.get(tag)
    strip_times(Path(stored.path))
    return tag


def stored_bento(bentoml, bento_tag: str, model_tag: str, spec: BentoSpec):
    """The stored Bento `bento_tag` when it is still the one the project makes; else None (deleted if bad)."""
    try:
        bento = bentoml.get(bento_tag)
    except bentoml.exceptions.NotFound:
        return None
    sources = {p.relative_to(spec.root).as_posix(): p for p in spec.source_files()}
    if problem := stored_bento_problem(Path(bento.path), model_tag, sources):
        say(f"the stored Bento {bento_tag} {problem}: building it again")
        bentoml.bentos.delete(bento_tag)
        return None
    return bento


def build_bento(out: Path = BENTO_DIR, spec: BentoSpec | None = None) -> BentoBuild:
    """Import the model, build the Bento and export it, normalized, to `out` (build/bento/).

    `spec` is what plugs the model in (default: the checkout's params.yaml `bento`).
    """
    spec = spec or bento_spec()
    if not spec.serve_lock.is_file():
        raise UserError(f"{spec.serve_lock} is missing: the Bento records the serving lock (docs/adapting.md).")
    bentoml = _bentoml()
    manifest = load_manifest(spec.manifest_file)
    model_tag = import_model(manifest, spec)
    version = bento_version(manifest["version"], sources_digest(spec))
    name = spec.name
    bento_tag = f"{name}:{version}"
    os.environ["MODEL_TAG"] = model_tag  # the service module refuses to import without it
    if bento := stored_bento(bentoml, bento_tag, model_tag, spec):
        say(f"Bento {bento_tag} already built (sources and model checked)")
    else:
        say(f"building Bento {bento_tag}")
        bento = bentoml.bentos.build(
            service=spec.service,
            name=name,
            version=version,
            build_ctx=str(spec.root),
            # Anchored patterns (BentoML reads them like .gitignore): a bare "params.yaml" would
            # also match copies under build/.
            include=[f"/{pattern}" for pattern in (*spec.sources, "params.yaml")],
            exclude=["/build/", "/.cache/", "/.nox/"],
            labels={"model": model_tag},
            # Without it BentoML copies the repository README into the Bento (and the served
            # OpenAPI), so editing docs would change the Bento and the image.
            description=spec.description,
            # The image installs from requirements-serve.lock itself (hashed, offline); this only
            # records it in the Bento. lock_packages=False: BentoML must not resolve over the network.
            python={"requirements_txt": spec.serve_lock.name, "lock_packages": False},
            models=[model_tag],
        )
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(bento.path, out)
    # A stored Bento only names its models; the image needs them beside it, laid out as the model
    # store that `bentoml serve <bento dir>` reads (models/<name>/<version>/).
    name, version = model_tag.split(":")
    exported = out / "models" / name / version
    shutil.copytree(bentoml.models.get(model_tag).path, exported)
    # The bytes that go into the image, checked once more: the image's model.sha256 label says them.
    if problem := stored_model_problem(exported, manifest, spec.manifest_file):
        raise UserError(f"the model exported to {exported} {problem}: delete {BENTOML_HOME} and build again.")
    strip_times(out)
    normalize_modes(out)
    return BentoBuild(model_tag=model_tag, bento_tag=bento_tag, path=out, digest=tree_digest(out))


def main() -> None:
    """`python -m ci.image.bento [--root DIR] [--out DIR]`: build the Bento and print its tag and digest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the project whose params.yaml plugs the model in")
    parser.add_argument("--out", type=Path, default=BENTO_DIR, help="where to export the Bento")
    args = parser.parse_args()
    result = build_bento(args.out.resolve(), bento_spec(args.root.resolve()))
    print(f"{result.bento_tag} sha256:{result.digest}")


if __name__ == "__main__":
    main_guard(main)
