"""A small kustomize: exactly the features deploy/ uses, with kustomize's own semantics, in Python.

Why not kustomize itself: no kustomize binary installs here from a registry this project may use
(kustomize ships as a Go binary from GitHub releases; PyPI's `kustomize` is an unrelated 2024 port,
and kubectl 1.20 from Debian embeds kustomize 2.0.3, which has no `patches:` or `components:`), and a
hashed Python lock is how this project pins tools. So the renderer is this module, kept to what
deploy/ needs, and anything else in a kustomization is refused by name rather than ignored:

    resources    files (one or more YAML documents) and directories holding a kustomization
    components   directories holding a `kind: Component`: after the resources, each component adds
                 its resources and applies its transformers to everything gathered so far
    patches      JSON 6902 patches (add, remove, replace, test) with a `target` selector
                 (group, version, kind, name; each an anchored regular expression, as in kustomize);
                 a target that matches nothing is not an error, as in kustomize
    images       name, newName, newTag, digest: the `image` of every entry of any `containers` or
                 `initContainers` list, anywhere in a resource (kustomize's legacy image filter)

Order within one kustomization, as kustomize's: resources, components, patches, images. The kind job
in GitHub Actions renders the same overlays with the real kustomize (inside kubectl on the kind node)
and fails when any object differs (ci/deploy/kind.py), so this module is checked against it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ci.records import ROOT, UserError

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED = {"apiVersion", "kind", "resources", "components", "patches", "images"}
TARGET_FIELDS = {"group", "version", "kind", "name"}
IMAGE_FIELDS = {"name", "newName", "newTag", "digest"}
CONTAINER_LISTS = ("containers", "initContainers")


@dataclass(frozen=True)
class Ref:
    """What identifies a resource in a kustomization: its group, version, kind, namespace and name."""

    api_version: str
    kind: str
    name: str
    namespace: str = ""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def ref(resource: dict) -> Ref:
    """The identity of one resource."""
    meta = resource.get("metadata") or {}
    return Ref(
        resource.get("apiVersion", ""), resource.get("kind", ""), meta.get("name", ""), meta.get("namespace", "")
    )


def shown(path: Path) -> str:
    """A path as the user knows it: relative to the checkout when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def kustomization_file(directory: Path) -> Path:
    """The kustomization file of a directory, or a UserError naming the directory."""
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    raise UserError(f"{shown(directory)} has no kustomization.yaml: add one or point at a directory that has it.")


def load_kustomization(directory: Path) -> tuple[Path, dict]:
    """(file, content) of a directory's kustomization, refusing any field this renderer does not implement."""
    path = kustomization_file(directory)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise UserError(f"{shown(path)} is not a YAML mapping: fix it.")
    if unknown := sorted(set(data) - SUPPORTED):
        raise UserError(
            f"{shown(path)} uses {', '.join(unknown)}, which ci/deploy/kustomize.py does not implement: "
            f"use {', '.join(sorted(SUPPORTED - {'apiVersion', 'kind'}))}, or extend the renderer and its tests."
        )
    return path, data


def read_resources(path: Path) -> list[dict]:
    """Every non-empty YAML document of a resource file, each a mapping with apiVersion, kind and a name."""
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in documents:
        if not isinstance(doc, dict) or not all((doc.get("apiVersion"), doc.get("kind"), ref(doc).name)):
            raise UserError(f"{shown(path)} holds a document without apiVersion, kind and metadata.name: fix it.")
    return documents


def build(directory: Path) -> list[dict]:
    """Render the kustomization in `directory` (kind Kustomization) into its list of resources."""
    path, data = load_kustomization(directory)
    if data.get("kind", "Kustomization") != "Kustomization":
        raise UserError(f"{shown(path)} is a {data.get('kind')}: list it under `components:`, not `resources:`.")
    return _accumulate(directory, data, [], stack=(directory.resolve(),))


def _accumulate(directory: Path, data: dict, gathered: list[dict], *, stack: tuple[Path, ...]) -> list[dict]:
    """Add this kustomization's resources and components to `gathered`, then apply its transformers."""
    for entry in data.get("resources") or []:
        for resource in _resource(directory, entry, stack):
            _add(gathered, resource, directory)
    for entry in data.get("components") or []:
        component = (directory / entry).resolve()
        if component in stack:
            raise UserError(f"{shown(directory)} includes {entry}, which includes it again: break the cycle.")
        path, component_data = load_kustomization(component)
        if component_data.get("kind") != "Component":
            raise UserError(f"{shown(path)} is listed under `components:` but is not `kind: Component`: fix one.")
        gathered = _accumulate(component, component_data, gathered, stack=(*stack, component))
    for patch in data.get("patches") or []:
        apply_patch(gathered, patch, directory)
    for image in data.get("images") or []:
        set_image(gathered, image)
    return gathered


def _resource(directory: Path, entry: str, stack: tuple[Path, ...]) -> list[dict]:
    """The resources one `resources:` entry names: a file's documents, or a directory's rendering."""
    if "://" in entry or entry.startswith(("github.com/", "git@")):
        raise UserError(f"{shown(directory)} names the remote resource {entry}: deploy/ renders offline, vendor it.")
    target = (directory / entry).resolve()
    if target.is_dir():
        if target in stack:
            raise UserError(f"{shown(directory)} includes {entry}, which includes it again: break the cycle.")
        path, data = load_kustomization(target)
        if data.get("kind", "Kustomization") != "Kustomization":
            raise UserError(f"{shown(path)} is a {data.get('kind')}: list it under `components:`, not `resources:`.")
        return _accumulate(target, data, [], stack=(*stack, target))
    if target.is_file():
        return read_resources(target)
    raise UserError(f"{shown(directory)} lists the resource {entry}, which does not exist: fix the path.")


def _add(gathered: list[dict], resource: dict, directory: Path) -> None:
    """Append a resource; two with the same identity are an error, as in kustomize."""
    if any(ref(r) == ref(resource) for r in gathered):
        raise UserError(f"{shown(directory)} adds {ref(resource)} twice: remove one of them.")
    gathered.append(copy.deepcopy(resource))


# --- patches -----------------------------------------------------------------------------------------


def selected(resource: dict, target: dict) -> bool:
    """Whether a resource matches a patch target: every field given is an anchored regular expression."""
    if unknown := sorted(set(target) - TARGET_FIELDS):
        raise UserError(f"patch target {target} selects by {', '.join(unknown)}: use group, version, kind and name.")
    identity = ref(resource)
    values = {"group": identity.group, "version": identity.version, "kind": identity.kind, "name": identity.name}
    return all(re.fullmatch(f"(?:{pattern})", values[field]) for field, pattern in target.items() if pattern)


def apply_patch(resources: list[dict], entry: dict, directory: Path) -> None:
    """Apply one `patches:` entry (a JSON 6902 patch with a target) to every resource it selects."""
    if "target" not in entry:
        raise UserError(
            f"a patch in {shown(directory)} has no `target`: ci/deploy/kustomize.py applies JSON 6902 patches "
            "with a target only; add one."
        )
    if ("patch" in entry) == ("path" in entry):
        raise UserError(f"a patch in {shown(directory)} needs exactly one of `patch` and `path`: fix it.")
    text = entry["patch"] if "patch" in entry else (directory / entry["path"]).read_text()
    operations = yaml.safe_load(text)
    if not isinstance(operations, list) or not all(isinstance(op, dict) and "op" in op for op in operations):
        raise UserError(
            f"a patch in {shown(directory)} is not a JSON 6902 list of operations: "
            "strategic merge patches are not implemented by ci/deploy/kustomize.py; write it as operations."
        )
    for resource in resources:
        if selected(resource, entry["target"]):
            try:
                for operation in operations:
                    json_patch(resource, operation)
            except PatchError as exc:
                raise UserError(f"a patch in {shown(directory)} does not apply to {ref(resource)}: {exc}.") from exc


class PatchError(Exception):
    """A JSON 6902 operation that cannot apply (a missing path, a failed test)."""


def pointer(path: str) -> list[str]:
    """A JSON pointer (RFC 6901) as its unescaped tokens."""
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"{path!r} is not a JSON pointer (it must start with /)")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _parent(document: Any, tokens: list[str], path: str) -> tuple[Any, str]:
    """The container holding the pointer's last token, and that token."""
    if not tokens:
        raise PatchError("the whole document cannot be patched")
    node = document
    for token in tokens[:-1]:
        node = _child(node, token, path)
    return node, tokens[-1]


def _child(node: Any, token: str, path: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise PatchError(f"{path} does not exist")


def json_patch(document: dict, operation: dict) -> None:
    """Apply one RFC 6902 operation in place: add, remove, replace or test."""
    op, path = operation.get("op"), operation.get("path", "")
    tokens = pointer(path)
    if op == "test":
        node = document
        for token in tokens:
            node = _child(node, token, path)
        if node != operation.get("value"):
            raise PatchError(f"test of {path} failed: it is {node!r}, not {operation.get('value')!r}")
        return
    parent, last = _parent(document, tokens, path)
    value = copy.deepcopy(operation.get("value"))
    if op == "add":
        if isinstance(parent, dict):
            parent[last] = value
        elif isinstance(parent, list) and (last == "-" or (last.isdigit() and int(last) <= len(parent))):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            raise PatchError(f"{path} cannot be added to")
    elif op in ("remove", "replace"):
        _child(parent, last, path)  # must exist
        if op == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            parent[int(last) if isinstance(parent, list) else last] = value
    else:
        raise PatchError(
            f"the operation {op!r} is not implemented by ci/deploy/kustomize.py (add, remove, replace, test)"
        )


# --- images ------------------------------------------------------------------------------------------


def split_image(reference: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference, as kustomize splits it (a registry port is not a tag)."""
    slash = reference.find("/")
    offset = slash if slash > 0 else 0
    search = reference[offset:]
    at, colon = search.find("@"), search.find(":")
    if at < 0 and colon < 0:
        return reference, "", ""
    if at >= 0 and (colon < 0 or at < colon):
        return reference[: offset + at], "", reference[offset + at + 1 :]
    if at >= 0:
        return reference[: offset + colon], reference[offset + colon + 1 : offset + at], reference[offset + at + 1 :]
    return reference[: offset + colon], reference[offset + colon + 1 :], ""


def image_matches(value: str, name: str) -> bool:
    """kustomize's IsImageMatched: the name itself, optionally followed by a tag and a digest."""
    return re.fullmatch(f"{name}(:[a-zA-Z0-9_.{{}}-]*)?(@sha256:[a-zA-Z0-9_.{{}}-]*)?", value) is not None


def new_image(value: str, image: dict) -> str:
    """The image reference after one `images:` entry, as kustomize's imageTagUpdater builds it."""
    name, tag, digest = split_image(value)
    name = image.get("newName") or name
    if image.get("newTag") and image.get("digest"):
        tag, digest = image["newTag"], image["digest"]
    elif image.get("newTag"):
        tag, digest = image["newTag"], ""
    elif image.get("digest"):
        tag, digest = "", image["digest"]
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def set_image(resources: list[dict], image: dict) -> None:
    """Apply one `images:` entry to every container image it names, in every resource but a CRD."""
    unknown = sorted(set(image) - IMAGE_FIELDS)
    if unknown or not image.get("name"):
        raise UserError(f"the images entry {image} has {unknown or 'no name'}: use name, newName, newTag and digest.")

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value)
                if key in CONTAINER_LISTS and isinstance(value, list):
                    for container in value:
                        current = container.get("image") if isinstance(container, dict) else None
                        if isinstance(current, str) and image_matches(current, image["name"]):
                            container["image"] = new_image(current, image)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for resource in resources:
        if resource.get("kind") != "CustomResourceDefinition":
            walk(resource)
