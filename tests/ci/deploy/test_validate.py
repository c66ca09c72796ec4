"""ci/deploy/validate.py and ci/deploy/kserve.py: strict offline validation, and the vendored KServe schema."""

from __future__ import annotations

import copy
import gzip
import json

import pytest
import yaml

from ci.deploy import kserve, validate
from ci.project import UserError

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "model-server"},
    "spec": {"selector": {"app": "x"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
}
ISVC = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "model-server", "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
    "spec": {
        "predictor": {
            "minReplicas": 1,
            "containers": [
                {"name": "kserve-container", "image": "m@sha256:" + "0" * 64, "ports": [{"containerPort": 3000}]}
            ],
        }
    },
}


def test_a_valid_service_and_inference_service_pass():
    """Well-formed objects have no problem."""
    assert validate.problems([SERVICE, ISVC]) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda o: o["spec"].update(sessionAffinityy="None"), "sessionAffinityy"),  # a misspelt field: strict
        (lambda o: o["spec"]["ports"][0].update(port="eighty"), "port"),
        (lambda o: o["metadata"].update(labels=["not", "a", "map"]), "labels"),
    ],
)
def test_kubernetes_objects_are_validated_strictly(change, words):
    """An unknown field, a wrong type: a problem naming the object and the path."""
    broken = copy.deepcopy(SERVICE)
    change(broken)
    (problem,) = validate.problems([broken])
    assert problem.startswith("Service/model-server: ")
    assert words in problem


def test_a_kind_without_a_schema_is_reported_not_passed():
    """An object whose schema is neither Kubernetes' nor vendored cannot pass."""
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    (problem,) = validate.problems([unknown])
    assert "no example.com/v1 Widget" in problem


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda o: o["spec"]["predictor"].update(protocolVersion="v2"), "protocolVersion"),  # not on a custom predictor
        (lambda o: o["spec"]["predictor"]["containers"][0].update(imagePullPolicy=7), "imagePullPolicy"),
        (lambda o: o["spec"]["predictor"]["containers"][0].pop("name"), "name"),
        (lambda o: o["metadata"].update(labels=["x"]), "labels"),  # metadata checked as Kubernetes' ObjectMeta
        (lambda o: o["spec"].update(predictorr={}), "predictorr"),
    ],
)
def test_the_inference_service_is_validated_against_kserves_schema(change, words):
    """Unknown fields, wrong types and missing required fields fail, naming KServe's schema."""
    broken = copy.deepcopy(ISVC)
    change(broken)
    (problem,) = validate.problems([broken])
    assert problem.startswith("InferenceService/model-server: ")
    assert words in problem
    assert "(KServe v0.20.0 schema)" in problem


def test_the_vendored_schema_is_kserves_v1beta1_schema_without_descriptions():
    """The file holds the InferenceService schema (spec and status) and no description anywhere."""
    schema = kserve.load_schema()
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    predictor = schema["properties"]["spec"]["properties"]["predictor"]["properties"]
    assert {"containers", "minReplicas", "maxReplicas", "scaleMetric"} <= set(predictor)
    assert '"description":' not in json.dumps(schema)


def test_vendoring_strips_descriptions_only_and_writes_the_same_bytes(tmp_path, monkeypatch):
    """`vendor` takes the v1beta1 schema of a CRD whose sha256 is the pinned one, drops descriptions (a
    property named `description` stays) and writes deterministic gzip; another file is refused."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "spec": {
            "versions": [
                {
                    "name": "v1beta1",
                    "schema": {
                        "openAPIV3Schema": {
                            "description": "drop me",
                            "type": "object",
                            "properties": {"description": {"type": "string", "description": "and me"}},
                        }
                    },
                }
            ]
        },
    }
    source = tmp_path / "crd.yaml"
    source.write_text(yaml.safe_dump(crd))
    with pytest.raises(UserError, match="not the 57c3bf13"):
        kserve.vendor(source, tmp_path / "out.json.gz")
    monkeypatch.setattr(kserve, "KSERVE_CRD_SHA256", __import__("hashlib").sha256(source.read_bytes()).hexdigest())
    first = kserve.vendor(source, tmp_path / "a.json.gz").read_bytes()
    assert first == kserve.vendor(source, tmp_path / "b.json.gz").read_bytes()
    assert json.loads(gzip.decompress(first)) == {"type": "object", "properties": {"description": {"type": "string"}}}


def test_strict_refuses_unlisted_properties_except_where_unknown_fields_are_preserved():
    """additionalProperties: false where properties are listed; maps and preserved objects stay open."""
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"c": {}}},
        },
    }
    result = kserve.strict(schema)
    assert result["additionalProperties"] is False
    assert result["properties"]["a"]["additionalProperties"] is False
    assert result["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in result["properties"]["raw"]
