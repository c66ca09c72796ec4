"""ci/deploy/render.py: the image by digest, the values params.yaml owns, and one sentence for bad configuration."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from ci.bench.run import read_only_mounts
from ci.deploy import kustomize, render
from ci.project import UserError, section
from ci.records import write_push

DIGEST = "sha256:" + "d" * 64
OTHER = "sha256:" + "e" * 64


@pytest.fixture(name="values", scope="module")
def fixture_values() -> render.Settings:
    """The Settings of this checkout."""
    return render.settings()


def pod_and_container(objects: list[dict]) -> tuple[dict, dict]:
    """The Deployment's pod spec and its serving container."""
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_settings_come_from_params_and_the_image(values):
    """Port, uid and timeout are params.yaml's; the writable paths are those `nox -s bench` runs read-only with."""
    assert (values.port, values.uid, values.timeout_s) == (
        section("serve")["port"],
        section("image")["user_uid"],
        section("serve")["timeout_s"],
    )
    assert values.variants == tuple(section("image")["variants"])
    assert values.writable == tuple(read_only_mounts("/home/bentoml"))  # the Dockerfile's BENTOML_HOME
    assert values.grace_period_s == render.PRESTOP_SLEEP_S + values.timeout_s + render.SHUTDOWN_MARGIN_S


def test_the_rendering_carries_every_generated_value(values, tmp_path):
    """Image by digest, containerPort, uid and gid, preStop and grace period, and a mount for every writable path."""
    result = render.render("cpu", "kubernetes", ("reg.example/team/model", DIGEST), values, tmp_path)
    pod, container = pod_and_container(result.objects)
    assert container["image"] == f"reg.example/team/model@{DIGEST}"
    assert container["ports"][0]["containerPort"] == values.port
    assert {pod["securityContext"][k] for k in ("runAsUser", "runAsGroup", "fsGroup")} == {values.uid}
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": render.PRESTOP_SLEEP_S}}
    assert pod["terminationGracePeriodSeconds"] == values.grace_period_s
    assert sorted(m["mountPath"] for m in container["volumeMounts"]) == sorted(values.writable)
    (volume,) = pod["volumes"]
    assert volume["emptyDir"]["medium"] == "Memory"
    assert {m["name"] for m in container["volumeMounts"]} == {volume["name"]}


def test_changed_params_change_the_rendering(values, tmp_path):
    """Another port, uid or timeout in params.yaml reaches the manifests: nothing is written twice by hand."""
    changed = dataclasses.replace(values, port=8080, uid=4242, timeout_s=30)
    for form in render.FORMS:
        result = render.render("cpu", form, ("m", DIGEST), changed, tmp_path / form)
        text = yaml.safe_dump_all(result.objects)
        assert "containerPort: 8080" in text
        assert "runAsUser: 4242" in text
        assert f"terminationGracePeriodSeconds: {render.PRESTOP_SLEEP_S + 30 + render.SHUTDOWN_MARGIN_S}" in text
        assert f"containerPort: {values.port}" not in text


def test_the_generated_layer_is_a_kustomization_over_the_overlay(values, tmp_path):
    """kustomization.yaml names the overlay by a relative path and sets the image with kustomize's `images:`;
    rendering it again gives manifests.yaml's objects."""
    result = render.render("cuda", "kserve", ("m", DIGEST), values, tmp_path)
    layer = yaml.safe_load((result.directory / "kustomization.yaml").read_text())
    assert (result.directory / layer["resources"][0]).resolve() == render.DEPLOY_DIR / "overlays" / "kserve-cuda"
    assert layer["images"] == [{"name": render.IMAGE_PLACEHOLDER, "newName": "m", "digest": DIGEST}]
    assert kustomize.build(result.directory) == result.objects
    written = [o for o in yaml.safe_load_all((result.directory / "manifests.yaml").read_text()) if o]
    assert written == result.objects


def test_a_sidecar_gets_none_of_the_model_servers_values(values):
    """Only containers whose image is the placeholder are the model server: an added sidecar is left alone."""
    pod = {
        "securityContext": {},
        "containers": [
            {"name": "proxy", "image": "envoy@sha256:" + "0" * 64, "ports": [{"name": "admin"}]},
            {"name": "model-server", "image": render.IMAGE_PLACEHOLDER, "ports": [{"name": "http"}]},
        ],
    }
    ops = render.pod_operations(pod, "/spec", render.Settings(3000, 10001, 10, "m", ("cpu",), ("/tmp",)))
    assert not any(op["path"].startswith("/spec/containers/0/") for op in ops)
    assert {"op": "add", "path": "/spec/containers/1/ports/0/containerPort", "value": 3000} in ops


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"image": "reg/m@" + DIGEST, "digest": None}, ("reg/m", DIGEST)),
        ({"image": "reg:5000/m", "digest": DIGEST}, ("reg:5000/m", DIGEST)),
        ({"image": None, "digest": DIGEST}, ("local/model", DIGEST)),
        ({"image": "reg/m@" + DIGEST, "digest": DIGEST}, ("reg/m", DIGEST)),
    ],
)
def test_the_image_comes_from_the_arguments(kwargs, expected, tmp_path):
    """--image with a digest, --image with --digest, --digest alone (params.yaml's repository)."""
    assert render.resolve_image("cpu", repository="local/model", records=tmp_path, **kwargs) == expected


def test_the_image_comes_from_the_push_record_when_no_argument_names_it(tmp_path):
    """build/push-<variant>.json's by_digest, as `nox -s push` wrote it."""
    write_push({"variant": "cuda", "by_digest": f"127.0.0.1:5000/m@{OTHER}", "digest": OTHER}, "cuda", tmp_path)
    assert render.resolve_image("cuda", image=None, digest=None, repository="x", records=tmp_path) == (
        "127.0.0.1:5000/m",
        OTHER,
    )


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"image": None, "digest": None}, "no digest for the cpu image (push-cpu.json is missing or unreadable): push"),
        ({"image": "reg/m:latest", "digest": None}, "names a tag: deploy by digest"),
        ({"image": "reg/m:v1", "digest": DIGEST}, "names a tag"),
        ({"image": None, "digest": "sha256:abc"}, "is not a sha256 digest"),
        ({"image": "reg/m@" + DIGEST, "digest": OTHER}, "give one"),
    ],
)
def test_a_missing_or_unpinned_image_is_one_sentence_that_says_what_to_do(kwargs, words, tmp_path):
    """Nothing pushed and no --digest, a tag, a malformed or conflicting digest: a UserError, no traceback."""
    with pytest.raises(UserError) as error:
        render.resolve_image("cpu", repository="m", records=tmp_path, **kwargs)
    assert words in str(error.value)
    assert str(error.value).endswith(".")


def test_variant_arguments_name_their_variant_unless_only_one_is_rendered():
    """`--digest cpu=...`; a bare value is allowed for one variant only; an unknown variant is named."""
    variants = ("cpu", "cuda")
    assert render.per_variant([f"cpu={DIGEST}", f"cuda={OTHER}"], "--digest", variants, variants) == {
        "cpu": DIGEST,
        "cuda": OTHER,
    }
    assert render.per_variant([DIGEST], "--digest", variants, ["cuda"]) == {"cuda": DIGEST}
    with pytest.raises(UserError, match="names no variant and 2 are rendered"):
        render.per_variant([DIGEST], "--digest", variants, variants)
    with pytest.raises(UserError, match="unknown variant 'gpu'"):
        render.per_variant([f"gpu={DIGEST}"], "--digest", variants, variants)


def test_main_writes_every_form_and_ends_with_a_table(tmp_path, capsys):
    """`python -m ci.deploy.render --digest ...` renders both forms of both variants and prints the summary."""
    render.main(["--digest", f"cpu={DIGEST}", "--digest", f"cuda={OTHER}", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.count("PASS") == 4
    for variant in ("cpu", "cuda"):
        for form in render.FORMS:
            assert (tmp_path / variant / form / "manifests.yaml").is_file()


def test_main_refuses_an_unknown_variant_and_a_missing_digest(tmp_path, monkeypatch):
    """`--variant gpu` and a variant with neither a push record nor --digest end in one sentence."""
    with pytest.raises(UserError, match="unknown variant 'gpu'"):
        render.main(["--variant", "gpu", "--out", str(tmp_path)])
    with pytest.raises(UserError, match=r"nox -s push -- --variant cuda.*--digest cuda=sha256"):
        render.main(["--records", str(tmp_path), "--digest", f"cpu={DIGEST}", "--out", str(tmp_path)])


def test_a_failed_check_ends_in_one_sentence_naming_the_problem(values, tmp_path):
    """verdict() turns the first problem of a failed rendering into a UserError that says what to fix."""
    result = render.render("cpu", "kubernetes", ("m", DIGEST), values, tmp_path)
    result.invalid = ["Deployment/model-server: spec.x: bad"]
    result.denials = ["k8s_probes: Deployment/model-server container model-server has no livenessProbe"]
    with pytest.raises(UserError) as error:
        render.verdict([result])
    message = str(error.value)
    assert message.startswith("the cpu/kubernetes manifests fail their checks: Deployment/model-server: spec.x: bad")
    assert "(and 1 more problem, listed above)" in message
    assert message.endswith("run `nox -s deploy` again.")
    assert json.dumps(message).count("\\n") == 0
