"""policies/kubernetes/: every policy passes the rendered manifests and fails a planted violation, by name;
and the split from the image gate's policies/*.rego holds both ways."""

from __future__ import annotations

import copy

import pytest

from ci.deploy import policies, render
from ci.gate import policy as gate_policy

DIGEST = "sha256:" + "f" * 64


@pytest.fixture(name="values", scope="module")
def fixture_values() -> render.Settings:
    """The Settings of this checkout."""
    return render.settings()


@pytest.fixture(name="renderings", scope="module")
def fixture_renderings(values, tmp_path_factory) -> dict[str, list[dict]]:
    """The cpu variant's objects in both forms, rendered as `nox -s deploy` renders them."""
    out = tmp_path_factory.mktemp("policies")
    return {form: render.render("cpu", form, ("reg.example/m", DIGEST), values, out).objects for form in render.FORMS}


def denials(objects: list[dict], values: render.Settings) -> dict[str, list[str]]:
    """rule -> messages for every Kubernetes policy; a policy that errs fails the test."""
    results = policies.evaluate(policies.document(objects, values, "test"))
    assert {r.rule: r.error for r in results if r.error} == {}
    return {r.rule: r.denials for r in results}


def only(objects: list[dict], values: render.Settings, rule: str) -> list[str]:
    """The messages of `rule`, checking that no other policy objects."""
    found = denials(objects, values)
    assert {name: msgs for name, msgs in found.items() if msgs and name != rule} == {}
    assert found[rule], f"{rule} passed the planted violation"
    assert all(msg.startswith(f"{rule}: ") for msg in found[rule])
    return found[rule]


@pytest.mark.parametrize("form", list(render.FORMS))
def test_every_policy_passes_the_rendered_manifests(renderings, values, form):
    """Both forms pass every policy, and there are policies to pass."""
    found = denials(renderings[form], values)
    assert set(found) == {p.stem for p in policies.policy_files()}
    assert {rule: msgs for rule, msgs in found.items() if msgs} == {}


def _pod(objects: list[dict]) -> dict:
    for obj in objects:
        if obj["kind"] == "Deployment":
            return obj["spec"]["template"]["spec"]
        if obj["kind"] == "InferenceService":
            return obj["spec"]["predictor"]
    raise AssertionError("no workload")


def _container(objects: list[dict]) -> dict:
    return _pod(objects)["containers"][0]


def _set(getter, *path, value):
    def plant(objects):
        node = getter(objects)
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return plant


def _drop(getter, *path):
    def plant(objects):
        node = getter(objects)
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return plant


def _init_container(objects):
    _pod(objects)["initContainers"] = [copy.deepcopy(_container(objects)) | {"name": "init", "image": "busybox:1.36"}]


def _unknown_kind_with_a_tag(objects):
    objects.append(
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"containers": [{"image": "x"}]},
        }
    )


VIOLATIONS = [
    ("k8s_image_digest", _set(_container, "image", value="reg.example/m:latest"), "runs image reg.example/m:latest"),
    ("k8s_image_digest", _set(_container, "image", value=f"reg.example/m:1@{DIGEST}"), "never by tag"),
    ("k8s_image_digest", _unknown_kind_with_a_tag, "Widget/w container (unnamed) runs image x"),
    ("k8s_probes", _drop(_container, "livenessProbe"), "has no livenessProbe"),
    ("k8s_probes", _drop(_container, "startupProbe"), "has no startupProbe"),
    ("k8s_probes", _set(_container, "readinessProbe", "httpGet", "path", value="/livez"), "readinessProbe gets /livez"),
    ("k8s_probes", _set(_container, "livenessProbe", "httpGet", "path", value="/readyz"), "livenessProbe gets /readyz"),
    ("k8s_probes", _set(_container, "readinessProbe", value={"tcpSocket": {"port": 3000}}), "(no HTTP GET)"),
    ("k8s_probes", _set(_container, "startupProbe", "httpGet", "port", value="metrics"), "does not declare"),
    ("k8s_probes", lambda objects: _container(objects)["ports"][0].update(containerPort=8080), "serve.port"),
    ("k8s_security_context", _set(_pod, "securityContext", "runAsNonRoot", value=False), "runAsNonRoot is not true"),
    ("k8s_security_context", _set(_container, "securityContext", "runAsUser", value=0), "runs as user 0"),
    ("k8s_security_context", _drop(_pod, "securityContext", "runAsUser"), "runs as user null"),
    (
        "k8s_security_context",
        _drop(_container, "securityContext", "allowPrivilegeEscalation"),
        "allowPrivilegeEscalation",
    ),
    ("k8s_security_context", _set(_container, "securityContext", "privileged", value=True), "is privileged"),
    (
        "k8s_security_context",
        _set(_container, "securityContext", "readOnlyRootFilesystem", value=False),
        "readOnlyRoot",
    ),
    ("k8s_security_context", _set(_container, "securityContext", "capabilities", value={}), "drop ALL"),
    ("k8s_security_context", _set(_container, "securityContext", "capabilities", "add", value=["NET_ADMIN"]), "adds"),
    ("k8s_security_context", _drop(_pod, "securityContext", "seccompProfile"), "seccomp profile (none)"),
    (
        "k8s_security_context",
        _set(_container, "securityContext", "seccompProfile", value={"type": "Unconfined"}),
        "seccomp profile Unconfined",
    ),
    ("k8s_security_context", _set(_pod, "hostNetwork", value=True), "sets hostNetwork"),
    ("k8s_resources", _drop(_container, "resources", "limits", "memory"), "has no memory limits"),
    ("k8s_resources", _drop(_container, "resources", "requests"), "has no cpu requests"),
    ("k8s_graceful_shutdown", _drop(_container, "lifecycle"), "has no preStop hook"),
    (
        "k8s_graceful_shutdown",
        _set(_pod, "terminationGracePeriodSeconds", value=15),
        "terminationGracePeriodSeconds 15",
    ),
    ("k8s_graceful_shutdown", _set(_container, "lifecycle", "preStop", "sleep", "seconds", value=20), "wait (20 s)"),
]


@pytest.mark.parametrize("form", list(render.FORMS))
@pytest.mark.parametrize(
    ("rule", "plant", "words"), VIOLATIONS, ids=[f"{rule}-{i}" for i, (rule, _, _) in enumerate(VIOLATIONS)]
)
def test_a_planted_violation_fails_its_rule_with_a_message_naming_it(renderings, values, form, rule, plant, words):
    """Each violation, in either form, fails exactly its own policy; the message says what is wrong."""
    objects = copy.deepcopy(renderings[form])
    plant(objects)
    messages = only(objects, values, rule)
    assert any(words in m for m in messages), messages


def test_an_init_container_is_held_to_the_image_security_and_resource_rules(renderings, values):
    """Init containers need a digest, a restricted context and resources, but no probes or preStop."""
    objects = copy.deepcopy(renderings["kubernetes"])
    _init_container(objects)
    messages = only(objects, values, "k8s_image_digest")
    assert messages == [
        "k8s_image_digest: Deployment/model-server container init runs image busybox:1.36: "
        "pin it by digest (repository@sha256:...), never by tag"
    ]


def test_the_shutdown_rule_reads_the_timeout_from_params(renderings, values):
    """A longer serve.timeout_s than the rendering was made for fails the grace period."""
    import dataclasses

    longer = dataclasses.replace(values, timeout_s=values.grace_period_s)
    assert only(renderings["kubernetes"], longer, "k8s_graceful_shutdown")


def test_a_broken_library_fails_every_policy(tmp_path, renderings, values, monkeypatch):
    """A shared module that does not compile is an error of every policy, never a pass."""
    broken = tmp_path / "lib.rego"
    broken.write_text("package k8s_workloads\nimport rego.v1\npods contains x if {\n")
    monkeypatch.setattr(policies, "library_files", lambda: [broken])
    results = policies.evaluate(policies.document(renderings["kubernetes"], values, "t"))
    assert results
    assert all(r.error and "does not compile" in r.error for r in results)


def test_every_kubernetes_policy_is_a_v1_package_named_after_its_file():
    """`import rego.v1`, `deny contains msg if`, `package <file name>`, and a first comment the summary shows."""
    for path in policies.policy_files():
        text = path.read_text()
        assert f"package {path.stem}\n" in text
        assert "import rego.v1" in text
        assert "deny contains msg if" in text
        assert path.stem.startswith("k8s_")
        assert gate_policy.describe(path)


def test_the_image_gate_and_the_deploy_checks_never_evaluate_each_others_policies():
    """The gate (and lint's Dockerfile policies) read policies/*.rego only; deploy, policies/kubernetes/*.rego."""
    gate = {p.resolve() for p in gate_policy.policy_files()}
    deploy = {p.resolve() for p in policies.policy_files()}
    assert gate
    assert deploy
    assert not gate & deploy
    assert all(p.parent == gate_policy.POLICY_DIR for p in gate)
    assert all(p.parent == policies.POLICY_DIR for p in deploy)
    assert not {p.resolve() for p in gate_policy.dockerfile_policies()} & deploy
    assert policies.POLICY_DIR.parent == gate_policy.POLICY_DIR
