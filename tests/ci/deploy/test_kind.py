"""ci/deploy/kind.py and ci/deploy/versions.py: what the kind job decides, tested without a cluster.

The job itself runs only in GitHub Actions (no cluster can run on this project's machines); these
tests cover its pieces: the pins, the registry wiring, the kustomize comparison and the check of the
service's two answers.
"""

from __future__ import annotations

import re

import pytest

from ci.deploy import kind, versions
from ci.project import UserError

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
METADATA = {
    "name": "breast_cancer_classifier",
    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 30]}],
    "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ],
}
PREDICTED = [{"label": "benign", "probabilities": {"malignant": 0.25, "benign": 0.75}, "model_version": "abc"}]
INFERRED = {
    "model_name": "breast_cancer_classifier",
    "model_version": "abc",
    "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.2500001, 0.7499999]},
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["benign"]},
    ],
}


def test_every_image_the_job_runs_is_pinned_by_digest():
    """The kind node and the registry are named by digest, and the node runs the validated Kubernetes version."""
    assert DIGEST.search(versions.KIND_NODE_IMAGE)
    assert DIGEST.search(versions.REGISTRY_IMAGE)
    node_version = re.search(r":v(\d+\.\d+)\.\d+@", versions.KIND_NODE_IMAGE)
    assert node_version
    assert node_version.group(1) == versions.KUBERNETES_VERSION
    assert re.fullmatch(r"v\d+\.\d+\.\d+", versions.KIND_VERSION)
    assert re.fullmatch(r"[0-9a-f]{40}", versions.KSERVE_COMMIT)


def test_the_pinned_kubernetes_version_has_schemas_in_the_locked_validator():
    """kubernetes-validate (requirements.lock) ships the schemas of versions.KUBERNETES_VERSION."""
    from kubernetes_validate import utils

    assert versions.KUBERNETES_VERSION in {utils.major_minor(v) for v in utils.all_versions()}


def test_nodes_reach_the_registry_by_the_name_the_runner_pushes_to():
    """containerd in a node maps localhost:5001 to the registry container on kind's network."""
    assert f"localhost:{kind.REGISTRY_PORT}" == kind.REGISTRY_HOST
    assert kind.hosts_toml("reg") == '[host."http://reg:5000"]\n'


@pytest.mark.parametrize(
    ("output", "ok"),
    [
        (f"kind {versions.KIND_VERSION} go1.26.3 linux/amd64", True),
        ("kind v0.27.0 go1.24.0 linux/amd64", False),
        ("", False),
    ],
)
def test_only_the_pinned_kind_is_used(output, ok):
    """`kind version` must name versions.KIND_VERSION."""
    assert kind.kind_version_matches(output) is ok


def test_without_go_or_a_cached_kind_the_job_says_what_to_install(tmp_path):
    """No kind in .cache/kind and no `go`: one sentence naming Go."""
    with pytest.raises(UserError, match="installed with Go and `go` is not on PATH"):
        kind.kind_binary(cache=tmp_path, environ={"PATH": str(tmp_path)})


def test_a_cached_kind_is_used_as_it_is(tmp_path):
    """A kind already installed at the pinned version is not installed again."""
    binary = tmp_path / versions.KIND_VERSION / "kind"
    binary.parent.mkdir()
    binary.write_text("")
    assert kind.kind_binary(cache=tmp_path, environ={"PATH": ""}) == str(binary)


def test_renderings_compare_object_by_object_regardless_of_order():
    """Same objects in another order: no difference; a changed or missing object is named with its path."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "m"},
        "spec": {"a": [1, {"b": 2}]},
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m"}}
    assert kind.differences([deployment, service], [service, deployment]) == []
    changed = {**deployment, "spec": {"a": [1, {"b": 3}]}}
    assert kind.differences([deployment, service], [changed]) == [
        "only ci/deploy/kustomize.py renders v1 Service/m",
        "apps/v1 Deployment/m differs at /spec/a/1/b",
    ]


def test_the_smoke_requests_are_shaped_by_the_models_metadata():
    """One row of zeros with as many features as the model's input declares, for both routes."""
    predict, infer = kind.smoke_requests(METADATA)
    assert predict == {"rows": [[0.0] * 30]}
    (tensor,) = infer["inputs"]
    assert (tensor["name"], tensor["shape"], len(tensor["data"])) == ("features", [1, 30], 30)


def test_consistent_answers_pass():
    """/predict and /v2 infer agree on the label, the probabilities (to /predict's 6 decimals) and the model."""
    assert kind.answer_problems(METADATA, PREDICTED, INFERRED) == []


@pytest.mark.parametrize(
    ("predicted", "inferred", "words"),
    [
        ([], INFERRED, "not one prediction"),
        ([{**PREDICTED[0], "label": "other"}], INFERRED, "is not one of its classes"),
        ([{**PREDICTED[0], "probabilities": {"malignant": 0.5, "benign": 0.6}}], INFERRED, "sum to"),
        (PREDICTED, {**INFERRED, "outputs": INFERRED["outputs"][:1]}, "without the outputs"),
        (PREDICTED, {**INFERRED, "model_version": "def"}, "names model def"),
        (
            PREDICTED,
            {**INFERRED, "outputs": [{**INFERRED["outputs"][0], "data": [0.3, 0.7]}, INFERRED["outputs"][1]]},
            "are not /predict's",
        ),
    ],
)
def test_inconsistent_answers_are_named(predicted, inferred, words):
    """Each way the two answers can disagree is reported."""
    problems = kind.answer_problems(METADATA, predicted, inferred)
    assert any(words in p for p in problems), problems
