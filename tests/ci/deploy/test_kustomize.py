"""ci/deploy/kustomize.py: the kustomize features deploy/ uses, with kustomize's semantics; the rest refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ci.deploy import kustomize
from ci.project import UserError

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "template": {
            "spec": {
                "initContainers": [{"name": "init", "image": "app:1"}],
                "containers": [{"name": "app", "image": "app"}, {"name": "side", "image": "proxy:2"}],
            }
        }
    },
}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}


def write(directory: Path, kustomization: dict, **resources: object) -> Path:
    """A directory with a kustomization.yaml and resource files (a list value is a multi-document file)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    for name, content in resources.items():
        docs = content if isinstance(content, list) else [content]
        (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(docs))
    return directory


def kustomization(**fields: object) -> dict:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **fields}


def test_resources_from_files_and_directories_keep_their_order(tmp_path):
    """Files (several documents each) and directories with a kustomization, in the order listed."""
    write(tmp_path / "base", kustomization(resources=["svc.yaml"]), svc=SERVICE)
    other = {**SERVICE, "metadata": {"name": "other"}}
    overlay = write(tmp_path / "overlay", kustomization(resources=["app.yaml", "../base"]), app=[DEPLOYMENT, other])
    assert [str(kustomize.ref(r)) for r in kustomize.build(overlay)] == [
        "Deployment/web",
        "Service/other",
        "Service/web",
    ]


def test_a_resource_added_twice_is_an_error(tmp_path):
    """Two resources with one identity: kustomize refuses them, and so does this."""
    overlay = write(tmp_path / "o", kustomization(resources=["a.yaml", "b.yaml"]), a=SERVICE, b=SERVICE)
    with pytest.raises(UserError, match="adds Service/web twice"):
        kustomize.build(overlay)


def test_json_patches_apply_to_the_targets_they_select_only(tmp_path):
    """A target's fields are anchored regular expressions: `Deploy` selects no Deployment; no match is no error."""
    patches = [
        {"target": {"kind": "Deployment", "name": "w.b"}, "patch": "- {op: add, path: /spec/replicas, value: 3}"},
        {"target": {"kind": "Deploy"}, "patch": "- {op: add, path: /spec/paused, value: true}"},
        {"target": {"group": "apps", "version": "v1", "kind": "StatefulSet"}, "patch": "- {op: remove, path: /x}"},
    ]
    overlay = write(tmp_path / "o", kustomization(resources=["a.yaml"], patches=patches), a=[DEPLOYMENT, SERVICE])
    deployment, service = kustomize.build(overlay)
    assert deployment["spec"]["replicas"] == 3
    assert "paused" not in deployment["spec"]
    assert service == SERVICE


def test_json_patch_operations_follow_rfc_6902():
    """add sets a member or inserts into a list (`-` appends), replace and remove need the path, test compares."""
    doc = {"a": {"list": [1, 2]}, "k/ey": 1}
    kustomize.json_patch(doc, {"op": "add", "path": "/a/list/0", "value": 0})
    kustomize.json_patch(doc, {"op": "add", "path": "/a/list/-", "value": 3})
    kustomize.json_patch(doc, {"op": "add", "path": "/a/new", "value": {"x": 1}})
    kustomize.json_patch(doc, {"op": "replace", "path": "/k~1ey", "value": 2})
    kustomize.json_patch(doc, {"op": "remove", "path": "/a/list/1"})
    kustomize.json_patch(doc, {"op": "test", "path": "/a/new/x", "value": 1})
    assert doc == {"a": {"list": [0, 2, 3], "new": {"x": 1}}, "k/ey": 2}
    for bad in (
        {"op": "add", "path": "/missing/child", "value": 1},
        {"op": "replace", "path": "/absent", "value": 1},
        {"op": "remove", "path": "/a/list/9"},
        {"op": "test", "path": "/k~1ey", "value": 3},
        {"op": "move", "from": "/a", "path": "/b"},
    ):
        with pytest.raises(kustomize.PatchError):
            kustomize.json_patch(doc, bad)


def test_a_patch_that_does_not_apply_names_the_resource(tmp_path):
    """A failing operation (a test of a container's name) stops the render with one sentence."""
    patch = "- {op: test, path: /spec/template/spec/containers/0/name, value: other}"
    overlay = write(
        tmp_path / "o",
        kustomization(resources=["a.yaml"], patches=[{"target": {"kind": "Deployment"}, "patch": patch}]),
    )
    (overlay / "a.yaml").write_text(yaml.safe_dump(DEPLOYMENT))
    with pytest.raises(UserError, match=r"does not apply to Deployment/web: test of .* failed"):
        kustomize.build(overlay)


def test_components_apply_after_the_resources_and_before_the_kustomizations_own_patches(tmp_path):
    """A component adds its resources and patches everything gathered; the parent's patches come last."""
    component = tmp_path / "component"
    component.mkdir()
    (component / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1alpha1",
                "kind": "Component",
                "resources": ["svc.yaml"],
                "patches": [{"target": {"kind": "Deployment"}, "patch": "- {op: add, path: /spec/replicas, value: 2}"}],
            }
        )
    )
    (component / "svc.yaml").write_text(yaml.safe_dump(SERVICE))
    own = {"target": {"kind": "Deployment"}, "patch": "- {op: test, path: /spec/replicas, value: 2}"}
    overlay = write(
        tmp_path / "o", kustomization(resources=["a.yaml"], components=["../component"], patches=[own]), a=DEPLOYMENT
    )
    deployment, service = kustomize.build(overlay)
    assert deployment["spec"]["replicas"] == 2
    assert service == SERVICE


def test_a_component_listed_as_a_resource_and_a_cycle_are_errors(tmp_path):
    """A Component under `resources:` and a directory that includes itself end in one sentence each."""
    component = write(tmp_path / "c", {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component"})
    with pytest.raises(UserError, match="under `components:`"):
        kustomize.build(write(tmp_path / "o", kustomization(resources=["../c"])))
    with pytest.raises(UserError, match="break the cycle"):
        kustomize.build(write(tmp_path / "loop", kustomization(resources=["."])))
    assert component.is_dir()


@pytest.mark.parametrize(
    ("reference", "parts"),
    [
        ("app", ("app", "", "")),
        ("app:1.0", ("app", "1.0", "")),
        ("registry:5000/team/app", ("registry:5000/team/app", "", "")),
        ("registry:5000/team/app:1.0", ("registry:5000/team/app", "1.0", "")),
        ("localhost:5001/app@sha256:" + "a" * 64, ("localhost:5001/app", "", "sha256:" + "a" * 64)),
        ("app:1@sha256:" + "b" * 64, ("app", "1", "sha256:" + "b" * 64)),
    ],
)
def test_image_references_split_as_kustomize_splits_them(reference, parts):
    """A registry's port is not a tag; a tag and a digest may both be present."""
    assert kustomize.split_image(reference) == parts


def test_images_set_every_container_list_anywhere_but_in_a_crd(tmp_path):
    """The image of every `containers`/`initContainers` entry whose name matches, at any depth, any kind."""
    custom = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "isvc"},
        "spec": {"predictor": {"containers": [{"name": "c", "image": "app:old"}]}},
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "x"},
        "spec": {"containers": [{"image": "app"}]},
    }
    image = {"name": "app", "newName": "reg.example/app", "digest": "sha256:" + "c" * 64}
    overlay = write(tmp_path / "o", kustomization(resources=["a.yaml"], images=[image]), a=[DEPLOYMENT, custom, crd])
    deployment, isvc, untouched = kustomize.build(overlay)
    pinned = "reg.example/app@sha256:" + "c" * 64
    spec = deployment["spec"]["template"]["spec"]
    assert [c["image"] for c in spec["initContainers"] + spec["containers"]] == [pinned, pinned, "proxy:2"]
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == pinned  # the tag is dropped for the digest
    assert untouched == crd


def test_fields_and_patches_it_does_not_implement_are_refused_by_name(tmp_path):
    """`labels`, a strategic merge patch, a patch without target and a remote resource are never ignored."""
    cases = [
        (kustomization(resources=["a.yaml"], labels=[{"pairs": {"a": "b"}}]), "uses labels"),
        (kustomization(resources=["a.yaml"], patches=[{"path": "p.yaml", "target": {"kind": "Service"}}]), "JSON 6902"),
        (kustomization(resources=["a.yaml"], patches=[{"patch": "- {op: remove, path: /spec}"}]), "no `target`"),
        (kustomization(resources=["https://github.com/x/y"]), "remote resource"),
        (kustomization(resources=["missing.yaml"]), "does not exist"),
    ]
    for index, (content, words) in enumerate(cases):
        directory = write(tmp_path / str(index), content, a=SERVICE)
        (directory / "p.yaml").write_text(yaml.safe_dump({"spec": {"type": "NodePort"}}))
        with pytest.raises(UserError, match=words):
            kustomize.build(directory)


def test_a_directory_without_a_kustomization_is_named():
    """Pointing at a directory that has none says which."""
    with pytest.raises(UserError, match=r"has no kustomization\.yaml"):
        kustomize.build(Path(__file__).parent)
