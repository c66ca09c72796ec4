"""What the deployment targets, pinned once: the Kubernetes API, the kind cluster, KServe, a registry.

Every check reads these: validation (ci/deploy/validate.py) against the Kubernetes API of
KUBERNETES_VERSION, the kind job (ci/deploy/kind.py) on a node image of that same version, and the
InferenceService against the CRD schema of KSERVE_VERSION vendored in ci/deploy/schemas/. Raising
the Kubernetes version means a kind release whose node image is that version (its release notes
list each image with its digest) and a kubernetes-validate that ships the schemas (requirements.lock).
"""

from __future__ import annotations

# 1.36: the newest Kubernetes that a released kind (v0.32.0) runs by default, so the manifests are
# validated against the very API the kind job deploys to. kubernetes-validate 1.37.0 (requirements.lock)
# ships the schemas of 1.25 to 1.37. The manifests need at least 1.30: the preStop `sleep` action
# (beta and on by default in 1.30, GA in 1.34) and the PodDisruptionBudget's unhealthyPodEvictionPolicy (1.31 GA).
KUBERNETES_VERSION = "1.36"

# kind v0.32.0 (2026-06-02), installed with `go install` (the Go checksum database verifies the
# module); its default node image, pinned by digest in kind's own source (pkg/apis/config/defaults).
KIND_VERSION = "v0.32.0"
KIND_MODULE = "sigs.k8s.io/kind"
KIND_NODE_IMAGE = "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"

# The registry the kind job pushes to, beside the cluster: Docker Distribution 2.8.3, the same
# registry as Debian's docker-registry package that `nox -s push` starts here.
REGISTRY_IMAGE = "registry:2@sha256:a3d8aaa63ed8681a604f1dea0aa03f100d5895b6a58ace528858a7b332415373"

# KServe's InferenceService CRD (serving.kserve.io/v1beta1), vendored from this release: the schema
# of spec and status, descriptions removed (ci/deploy/kserve.py vendor; docs/deploy.md).
KSERVE_VERSION = "v0.20.0"
KSERVE_COMMIT = "1fb781055dd1567164358233e1125142ca6ef1fe"
KSERVE_CRD_PATH = "config/crd/full/serving.kserve.io_inferenceservices.yaml"
KSERVE_CRD_SHA256 = "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff"  # the upstream file
