"""deploy/ itself, rendered as `nox -s deploy` renders it (a made-up digest): valid, policy-clean, as documented.

This is what CI checks of the manifests on every run (`nox -s unit`); the kind job then applies the
cpu rendering to a real cluster in GitHub Actions.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from ci.deploy import kind, policies, render
from ci.project import section

FAKE_DIGESTS = {"cpu": "sha256:" + "1" * 64, "cuda": "sha256:" + "2" * 64}
REPOSITORY = "registry.example/ml-model-image/breast-cancer"


@pytest.fixture(name="rendered", scope="module")
def fixture_rendered(tmp_path_factory) -> dict[tuple[str, str], render.Rendered]:
    """Every form of every variant, rendered with a made-up digest and checked, keyed by (variant, form)."""
    out = tmp_path_factory.mktemp("deploy")
    results = render.run(
        list(section("image")["variants"]),
        images={variant: REPOSITORY for variant in FAKE_DIGESTS},
        digests=FAKE_DIGESTS,
        out_dir=out,
    )
    return {(r.variant, r.form): r for r in results}


def workloads(result: render.Rendered) -> list[tuple[dict, dict]]:
    """(pod spec, serving container) of each workload of a rendering."""
    found = []
    for obj in result.objects:
        if obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]["spec"]
        elif obj["kind"] == "InferenceService":
            pod = obj["spec"]["predictor"]
        else:
            continue
        found.append((pod, pod["containers"][0]))
    return found


def test_every_variant_and_form_is_rendered(rendered):
    """Both variants (params.yaml image.variants), each as plain Kubernetes and as a KServe InferenceService."""
    assert set(rendered) == {(v, f) for v in section("image")["variants"] for f in render.FORMS}
    kinds = {key: sorted(o["kind"] for o in r.objects) for key, r in rendered.items()}
    for variant in FAKE_DIGESTS:
        assert kinds[variant, "kubernetes"] == [
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Service",
        ]
        assert kinds[variant, "kserve"] == ["InferenceService", "PodDisruptionBudget"]


def test_every_object_is_valid_against_the_pinned_kubernetes_and_kserve_schemas(rendered):
    """No rendered object fails strict validation (Kubernetes 1.36 API, KServe v0.20 CRD schema)."""
    assert {key: r.invalid for key, r in rendered.items() if r.invalid} == {}
    assert sum(len(r.objects) for r in rendered.values()) == 12


def test_every_policy_passes_every_rendering(rendered):
    """Every policy of policies/kubernetes/ ran on every rendering and denied nothing."""
    expected = len(policies.policy_files())
    for key, result in rendered.items():
        assert (result.policies, result.denials, result.policy_errors) == (expected, [], []), key


def test_every_image_is_the_variants_own_digest(rendered):
    """Each variant runs its own image, named by digest, in every form."""
    for (variant, _), result in rendered.items():
        for _, container in workloads(result):
            assert container["image"] == f"{REPOSITORY}@{FAKE_DIGESTS[variant]}"


def test_only_the_cuda_variant_asks_for_a_gpu(rendered):
    """nvidia.com/gpu: 1 as a limit in both cuda forms, with the GPU toleration; the cpu forms ask for none."""
    for (variant, _), result in rendered.items():
        for pod, container in workloads(result):
            gpu = container["resources"]["limits"].get("nvidia.com/gpu")
            tolerations = [t["key"] for t in pod.get("tolerations", [])]
            assert (gpu, tolerations) == ((1, ["nvidia.com/gpu"]) if variant == "cuda" else (None, []))


def test_the_inference_service_speaks_the_open_inference_protocol_on_the_services_port(rendered):
    """KServe reads a custom container's protocol from PROTOCOL: v2; its port is params.yaml serve.port."""
    for (_, form), result in rendered.items():
        if form != "kserve":
            continue
        (isvc,) = [o for o in result.objects if o["kind"] == "InferenceService"]
        assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
        (container,) = isvc["spec"]["predictor"]["containers"]
        assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
        assert container["ports"][0]["containerPort"] == section("serve")["port"]


def test_the_probes_fit_the_measured_cold_start_and_the_drain_covers_a_request(rendered):
    """The startup budget is well above the 1.15 s cold start (docs/figures.md); the grace period covers
    the preStop wait plus serve.timeout_s; the Service reaches the `http` port by name."""
    timeout = section("serve")["timeout_s"]
    for result in rendered.values():
        for pod, container in workloads(result):
            startup = container["startupProbe"]
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 1.15
            wait = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert pod["terminationGracePeriodSeconds"] > wait + timeout
    (service,) = [o for o in rendered["cpu", "kubernetes"].objects if o["kind"] == "Service"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def real_kustomize() -> list[str] | None:
    """`kubectl kustomize` when the kubectl on PATH embeds kustomize 5 (components, `patches:`), else None."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout
    return [kubectl, "kustomize"] if "Kustomize Version: v5" in version else None


@pytest.mark.skipif(
    real_kustomize() is None, reason="no kubectl with kustomize 5 on PATH (the kind job compares there)"
)
def test_the_real_kustomize_renders_every_generated_layer_the_same(rendered):
    """Where a kubectl with kustomize 5 is installed, it renders each generated layer into the same objects
    as ci/deploy/kustomize.py (the kind job makes the same comparison in GitHub Actions)."""
    for key, result in rendered.items():
        out = subprocess.run([*real_kustomize(), str(result.directory)], capture_output=True, text=True, check=True)
        theirs = [o for o in yaml.safe_load_all(out.stdout) if o]
        assert kind.differences(result.objects, theirs) == [], key
