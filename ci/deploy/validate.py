"""Validate rendered objects offline: the Kubernetes API schemas of versions.KUBERNETES_VERSION, and
KServe's CRD schema for the InferenceService.

Kubernetes objects go through kubernetes-validate (requirements.lock) in strict mode: a field the
API does not know is an error, as the API server's strict field validation (kubectl's default)
makes it. The InferenceService is validated against the CRD schema vendored in ci/deploy/schemas/
(ci/deploy/kserve.py), strict the same way, with its metadata against the Kubernetes ObjectMeta.
Any other kind has no schema here and is reported, never passed. What neither checks: admission
(webhooks, quotas, the pod security admission of a namespace) and what only a cluster knows; the
kind job in GitHub Actions applies the plain-Kubernetes manifests to a real API server.
"""

from __future__ import annotations

import functools
from typing import Any

from ci.deploy import kserve
from ci.deploy.kustomize import ref
from ci.deploy.versions import KSERVE_VERSION, KUBERNETES_VERSION

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _location(path: Any) -> str:
    return ".".join(str(part) for part in path) or "(the object)"


def kubernetes_problem(obj: dict, version: str = KUBERNETES_VERSION) -> str | None:
    """Why `obj` is not a valid object of the Kubernetes API `version`, or None."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{ref(obj)}: {_location(exc.path)}: {exc.message}"
    except kubernetes_validate.SchemaNotFoundError:
        kind = f"{obj.get('apiVersion')} {obj.get('kind')}"
        return f"{ref(obj)}: Kubernetes {version} has no {kind}, and no schema for it is vendored here"
    return None


@functools.cache
def _kserve_validator() -> Any:
    """A validator of the InferenceService: KServe's schema, strict, metadata as Kubernetes' ObjectMeta."""
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    # The schema directory kubernetes-validate itself picks for this version (the newest not newer).
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= KUBERNETES_VERSION][-1]
    definitions = utils.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)
    schema = kserve.strict(kserve.load_schema())
    schema["properties"]["metadata"] = {"$ref": f"{definitions['$id']}#/$defs/{OBJECT_META}"}
    registry = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def kserve_problem(obj: dict) -> str | None:
    """Why `obj` is not a valid InferenceService of the vendored KServe schema, or None."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_kserve_validator().iter_errors(obj))
    if error is None:
        return None
    return f"{ref(obj)}: {_location(error.absolute_path)}: {error.message} (KServe {KSERVE_VERSION} schema)"


def problem(obj: dict) -> str | None:
    """Why one rendered object is invalid, or None."""
    if obj.get("apiVersion") == kserve.API_VERSION and obj.get("kind") == kserve.KIND:
        return kserve_problem(obj)
    return kubernetes_problem(obj)


def problems(objects: list[dict]) -> list[str]:
    """One line per invalid object, in order."""
    return [p for p in map(problem, objects) if p]
