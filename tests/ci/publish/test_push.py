"""Push logic without Docker: tags, registry addresses, docker's output, error sentences, the summary."""

from __future__ import annotations

import json

import pytest

from ci import records
from ci.project import UserError
from ci.publish import push

MODEL_SHA = "6587079eeddb745a61cbe5b0a7657d7b22a283851ff3b25e7d48066f16bf03e0"
LABELS = {push.VERSION_LABEL: "6587079eeddb745a-4d843b9b", push.MODEL_SHA_LABEL: MODEL_SHA}
DIFF_IDS = [
    "sha256:e99c9c0e8f96f221bb2567f5f63c68307df86cb8cdfe09af35c230fe039c84fd",
    "sha256:e3a6c2ac97bc61cb75326c9fb9dde27cb833679aebd78c29b818827833a546ad",
    "sha256:c3d1c9e89d1c70522245aa222f84c31ef511e7c7a455cea65210e842b46d23ab",
]
DIGEST = "sha256:0522f5c291d51397dc60ad2f1efd01ddc1c301fb82e1e5ad7a6535f274ba6ecc"
# Verbatim `docker push` output (Docker 20.10, no terminal), captured against docker-registry 2.8.
FIRST_PUSH = f"""The push refers to repository [127.0.0.1:5999/ml-model-image/breast-cancer]
c3d1c9e89d1c: Preparing
e3a6c2ac97bc: Preparing
e99c9c0e8f96: Preparing
c3d1c9e89d1c: Pushed
e99c9c0e8f96: Layer already exists
e3a6c2ac97bc: Pushed
v1-cpu: digest: {DIGEST} size: 1367
"""
INTERRUPTED = """The push refers to repository [127.0.0.1:5998/ml-model-image/breast-cancer]
e3a6c2ac97bc: Preparing
e99c9c0e8f96: Preparing
e99c9c0e8f96: Pushed
e3a6c2ac97bc: Retrying in 5 seconds
e3a6c2ac97bc: Retrying in 4 seconds
e3a6c2ac97bc: Retrying in 1 second
e3a6c2ac97bc: Retrying in 10 seconds
dial tcp 127.0.0.1:5998: connect: connection refused
"""
ANONYMOUS = """The push refers to repository [127.0.0.1:5999/ml-model-image/breast-cancer]
e5e8e2cdd61c: Preparing
no basic auth credentials
"""
TARGET = push.Target("127.0.0.1:5999", "127.0.0.1:5999/ml-model-image/breast-cancer")


def test_tags_name_version_commit_and_model_per_variant():
    """Three tags, each ending in the variant; the model tag is the model's sha256 cut to 16 hex."""
    tags = push.push_tags("cpu", LABELS, version="v1.2.0", revision="7e66340")
    assert tags == ["v1.2.0-cpu", "sha-7e66340-cpu", "model-6587079eeddb745a-cpu"]


def test_variants_never_share_a_tag():
    """The CPU and CUDA images of one model and commit get disjoint tags: neither overwrites the other."""
    cpu = push.push_tags("cpu", LABELS, version="v1", revision="7e66340")
    cuda = push.push_tags("cuda", LABELS, version="v1", revision="7e66340")
    assert not set(cpu) & set(cuda)


def test_no_commit_means_no_sha_tag():
    """An image built outside git names no commit, so it gets no sha- tag rather than a wrong one."""
    assert push.push_tags("cpu", LABELS, version="v1", revision="") == ["v1-cpu", "model-6587079eeddb745a-cpu"]


DIRTY = {**LABELS, push.REVISION_LABEL: "7e66340b1c0de5a1e7c0ffee0ddba11c0ffee123-dirty"}


def test_a_dirty_image_gets_no_tag_and_the_error_says_commit_first():
    """Built from uncommitted changes, an image gets no version, sha- or model- tag, even with IMAGE_VERSION set.

    The refusal is one sentence: commit and rebuild, or push it under a dirty tag with --allow-dirty.
    """
    with pytest.raises(UserError) as caught:
        push.push_tags("cpu", DIRTY, version="v1.2.0", revision="7e66340")
    assert str(caught.value) == (
        "the cpu image was built from uncommitted changes (7e66340-dirty), so it gets no version, sha- or model- "
        "tag: commit them and run `nox -s 'build(cpu)'` again, or push it as dirty-7e66340-cpu only with "
        "`nox -s push -- --allow-dirty`."
    )


def test_allow_dirty_pushes_under_one_dirty_tag_only():
    """--allow-dirty gives a dirty image one tag, dirty-<commit>-<variant>: never a release, sha- or model- tag."""
    tags = push.push_tags("cpu", DIRTY, version="v1.2.0", revision="7e66340", allow_dirty=True)
    assert tags == ["dirty-7e66340-cpu"]


def test_allow_dirty_changes_nothing_for_a_clean_image():
    """A clean image gets its three tags whether or not --allow-dirty was given."""
    assert push.push_tags("cpu", LABELS, version="v1", revision="7e66340", allow_dirty=True) == [
        "v1-cpu",
        "sha-7e66340-cpu",
        "model-6587079eeddb745a-cpu",
    ]


def test_built_from_reads_the_commit_and_whether_it_was_dirty():
    """The revision label gives the commit (abbreviated) and the -dirty mark; no label gives neither."""
    assert push.built_from(DIRTY) == (push.short_revision(DIRTY[push.REVISION_LABEL][:40]), True)
    assert push.built_from({push.REVISION_LABEL: "unknown"}) == ("", False)
    assert push.built_from({}) == ("", False)


def test_short_revision_ignores_unknown():
    """The build writes 'unknown' as revision outside git: that is no commit."""
    assert push.short_revision("unknown") == ""
    assert push.short_revision("") == ""


def test_an_invalid_version_is_one_sentence():
    """IMAGE_VERSION that cannot be a tag (a slash, semver build metadata) is refused before anything is pushed."""
    with pytest.raises(UserError, match="is not a valid image tag: set IMAGE_VERSION"):
        push.push_tags("cpu", LABELS, version="release/1", revision="")


def test_an_image_without_model_label_must_be_rebuilt():
    """Without the model's sha256 label there is no model tag: the error says to rebuild."""
    with pytest.raises(UserError, match="rebuild it"):
        push.push_tags("cpu", {push.VERSION_LABEL: "v1"}, version="v1", revision="")


def test_version_comes_from_image_version_else_the_label():
    """IMAGE_VERSION (CI sets it from a git tag) wins over the image's OCI version label."""
    assert push.image_version(LABELS, "v2.0.0") == "v2.0.0"
    assert push.image_version(LABELS, None) == "6587079eeddb745a-4d843b9b"
    assert push.image_version(LABELS, "  ") == "6587079eeddb745a-4d843b9b"
    with pytest.raises(UserError, match=r"no org\.opencontainers\.image\.version label"):
        push.image_version({}, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ghcr.io/you", ("ghcr.io", "you")),
        ("ghcr.io/you/team/", ("ghcr.io", "you/team")),
        ("127.0.0.1:5000", ("127.0.0.1:5000", "")),
        ("localhost:5000/a_b", ("localhost:5000", "a_b")),
        ("registry.example.com", ("registry.example.com", "")),
        ("ghcr.io/MyOrg", ("ghcr.io", "myorg")),
    ],
)
def test_registry_addresses(value, expected):
    """REGISTRY is host[:port][/path]; upper case is folded (a GitHub owner `MyOrg` is `myorg` on ghcr.io)."""
    assert push.parse_registry(value) == expected


@pytest.mark.parametrize("value", ["http://127.0.0.1:5000", "you", "ghcr.io//x", "ghcr.io/a b", "ghcr.io/-x"])
def test_bad_registry_addresses_are_one_sentence(value):
    """A URL, an empty or invalid path part, or a bare name (docker would read it as Docker Hub) is refused."""
    with pytest.raises(UserError, match="is not a registry address: use host"):
        push.parse_registry(value)


def test_full_repository_joins_registry_and_image_repository():
    """The image repository from params.yaml goes under the registry's host and path."""
    assert push.target_repository("ghcr.io", "you", "ml/img") == "ghcr.io/you/ml/img"
    assert push.target_repository("127.0.0.1:5000", "", "ml/img") == "127.0.0.1:5000/ml/img"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5000", True), ("127.1.2.3", True), ("localhost:5000", True), ("[::1]:5000", True), ("ghcr.io", False)],
)
def test_only_loopback_registries_are_plain_http(host, loopback):
    """Plain HTTP only on loopback, as docker itself allows; everything else is HTTPS."""
    assert push.is_loopback(host) is loopback
    assert push.Target(host, f"{host}/x").url.startswith("http://" if loopback else "https://")


def test_push_output_gives_digest_and_final_layer_statuses():
    """The digest line and each layer's last status are read from docker's own output."""
    out = push.parse_push_output(FIRST_PUSH.splitlines())
    assert out.digest == DIGEST
    assert out.manifest_size == 1367
    assert out.statuses == {"c3d1c9e89d1c": "Pushed", "e99c9c0e8f96": "Layer already exists", "e3a6c2ac97bc": "Pushed"}


def test_retry_countdowns_do_not_count_as_a_status():
    """'Retrying in N seconds' is progress, not a layer's outcome."""
    out = push.parse_push_output(INTERRUPTED.splitlines())
    assert out.digest is None
    assert out.statuses == {"e99c9c0e8f96": "Pushed", "e3a6c2ac97bc": "Preparing"}


def test_retry_countdowns_are_echoed_once_per_countdown():
    """Only the first tick of each countdown is shown: 'Retrying in 5', then 'Retrying in 10'."""
    countdowns: dict[str, int] = {}
    shown = [line for line in INTERRUPTED.splitlines() if push.worth_echoing(line, countdowns)]
    assert [line for line in shown if "Retrying" in line] == [
        "e3a6c2ac97bc: Retrying in 5 seconds",
        "e3a6c2ac97bc: Retrying in 10 seconds",
    ]
    assert "dial tcp 127.0.0.1:5998: connect: connection refused" in shown


def test_a_registry_gone_mid_push_says_nothing_was_tagged_and_to_run_again():
    """Connection lost during the push: one sentence, nothing tagged, run `nox -s push` again."""
    error = push.push_failure(INTERRUPTED, target=TARGET, ref="r:v1-cpu", tagged=[])
    expected = "the registry went away during the push of r:v1-cpu; nothing was tagged; run `nox -s push` again."
    assert str(error) == expected


def test_a_registry_gone_after_some_tags_names_the_complete_ones():
    """When earlier tags were put, the error names them: they point at the complete image."""
    error = push.push_failure(INTERRUPTED, target=TARGET, ref="r:sha-1-cpu", tagged=["r:v1-cpu"])
    assert "only r:v1-cpu (complete) was tagged" in str(error)


def test_an_anonymous_push_refused_says_to_set_credentials():
    """docker's 'no basic auth credentials' becomes: set REGISTRY_USER and REGISTRY_PASSWORD."""
    error = push.push_failure(ANONYMOUS, target=TARGET, ref="r:v1-cpu", tagged=[])
    assert "refused an anonymous push: set REGISTRY_USER and REGISTRY_PASSWORD" in str(error)


def test_a_push_refused_for_a_user_names_the_user():
    """With credentials, a denied push is about that account's rights on the repository."""
    target = push.Target("ghcr.io", "ghcr.io/you/img", "you", "pw")
    error = push.push_failure("denied: permission_denied: write_package", target=target, ref="r", tagged=[])
    assert str(error).startswith("the registry at ghcr.io refused the push of you: check that this account may push")


def test_any_other_push_failure_quotes_dockers_last_line():
    """An unknown failure still ends in one sentence, quoting what docker said last."""
    error = push.push_failure("preparing\nmanifest invalid: whatever\n", target=TARGET, ref="r:t", tagged=[])
    assert str(error) == "`docker push r:t` failed: manifest invalid: whatever."


def test_login_failures():
    """A wrong password and an unreachable registry are told apart."""
    target = push.Target("127.0.0.1:5999", "127.0.0.1:5999/x", "ci", "pw")
    wrong = "Error response from daemon: login attempt to http://127.0.0.1:5999/v2/ failed with status: 401"
    assert "refused the login of ci: check REGISTRY_USER" in str(push.login_failure(wrong, target=target))
    gone = "Error response from daemon: Get http://127.0.0.1:5999/v2/: dial tcp: connect: connection refused"
    assert "does not answer" in str(push.login_failure(gone, target=target))


def test_layer_report_pairs_docker_ids_with_manifest_blobs():
    """docker's 12-hex layer names are diff IDs; the manifest's blobs come in the same order, with sizes."""
    statuses = push.parse_push_output(FIRST_PUSH.splitlines()).statuses
    blobs = [{"digest": f"sha256:{i}", "size": size} for i, size in enumerate((100, 300, 5))]
    layers = push.layer_report(DIFF_IDS, statuses, blobs)
    assert [(layer["size"], layer["sent"]) for layer in layers] == [(100, False), (300, True), (5, True)]
    assert push.totals(layers) == {"pushed": {"layers": 2, "bytes": 305}, "reused": {"layers": 1, "bytes": 100}}


def test_unknown_sizes_still_count_layers():
    """Without the manifest (a registry we cannot read back) layers are counted and bytes are unknown."""
    layers = push.layer_report(DIFF_IDS, {}, [])
    assert push.totals(layers) == {"pushed": {"layers": 3, "bytes": None}, "reused": {"layers": 0, "bytes": 0}}


def test_summary_shows_digests_and_unbuilt_variants():
    """The table has one row per variant, an unbuilt one says how to build it, and pull-by-digest lines follow."""
    result = {
        "variant": "cpu",
        "tags": ["v1-cpu"],
        "digest": DIGEST,
        "size": 2048,
        "pushed": {"layers": 0, "bytes": 0},
        "reused": {"layers": 5, "bytes": 2048},
        "by_digest": f"r@{DIGEST}",
    }
    text = push.summary([result], ["cuda"])
    assert DIGEST in text
    assert "0 layers, 0 B" in text
    assert "not built: run `nox -s 'build(cuda)'`" in text
    assert f"docker pull r@{DIGEST}" in text


@pytest.fixture(name="build_dir")
def fixture_build_dir(tmp_path, monkeypatch):
    """A build directory holding a cpu record and no cuda record."""
    monkeypatch.setattr(records, "BUILD_DIR", tmp_path)
    (tmp_path / "image-cpu.json").write_text(json.dumps({"id": "sha256:abc", "variant": "cpu"}))
    return tmp_path


def test_records_found_and_missing(build_dir):
    """Every variant with a build record is pushed; the others are named."""
    found, missing = push.find_records(["cpu", "cuda"])
    assert [variant for variant, _ in found] == ["cpu"]
    assert missing == ["cuda"]


def test_a_variant_asked_for_but_not_built_is_an_error(build_dir):
    """`--variant cuda` without a cuda build fails before touching Docker or a registry."""
    with pytest.raises(UserError, match=r"no cuda image has been built: run `nox -s 'build\(cuda\)'`"):
        push.push_all(["cuda"], explicit=True, out_dir=build_dir, environ={})


def test_nothing_built_is_an_error(tmp_path, monkeypatch):
    """With no build record at all, push says to build first."""
    monkeypatch.setattr(records, "BUILD_DIR", tmp_path)
    with pytest.raises(UserError, match="no image variant has been built: run `nox -s build` first"):
        push.push_all(["cpu", "cuda"], explicit=False, out_dir=tmp_path, environ={})


def test_half_a_set_of_credentials_is_refused():
    """REGISTRY_USER without REGISTRY_PASSWORD (or the reverse) is a mistake, not an anonymous push."""
    with (
        pytest.raises(UserError, match="set both REGISTRY_USER and REGISTRY_PASSWORD"),
        push.registry_target({"REGISTRY": "ghcr.io/you", "REGISTRY_USER": "you"}),
    ):
        pass


def test_an_unscanned_image_is_not_pushed(build_dir):
    """Without a scan record, push refuses before touching Docker or a registry, and says how to scan."""
    with pytest.raises(UserError, match=r"has not passed the scan gate .* run `nox -s 'scan\(cpu\)'`"):
        push.push_all(["cpu"], explicit=True, out_dir=build_dir, environ={})


def test_a_passed_scan_lets_the_push_go_on(build_dir, scan_record):
    """A passing scan of this image: the gate note says so (and says when trivy did not run)."""
    records.write_scan(scan_record(), "cpu")
    assert push.check_scan_gates([("cpu", {"id": "sha256:abc"})], skip=False) == {
        "cpu": "cpu: passed the scan gate (1 checks)"
    }
    records.write_scan(scan_record(without_trivy=True), "cpu")
    note = push.check_scan_gates([("cpu", {"id": "sha256:abc"})], skip=False)["cpu"]
    assert "WITHOUT a vulnerability scan" in note


def test_the_gate_can_be_skipped_only_on_request(build_dir):
    """--skip-scan-gate pushes without a scan, and the push record says it was skipped."""
    assert push.check_scan_gates([("cpu", {"id": "sha256:abc"})], skip=True) == {"cpu": "skipped (--skip-scan-gate)"}


def test_a_dirty_build_is_refused_before_the_scan_gate_and_the_engine(build_dir, monkeypatch):
    """A build record whose revision says -dirty stops the push first: no scan gate, no engine, no registry."""
    monkeypatch.setattr(push, "git", lambda *args, default="": default)  # abbreviate as outside a repository
    (build_dir / "image-cpu.json").write_text(json.dumps({"id": "sha256:abc", "variant": "cpu", "labels": DIRTY}))
    with pytest.raises(UserError, match=r"\(7e66340-dirty\), .* push it as dirty-7e66340-cpu only with `nox -s push"):
        push.push_all(["cpu"], explicit=True, out_dir=build_dir, environ={})


def test_allow_dirty_lets_a_dirty_build_on_to_the_scan_gate(build_dir):
    """With --allow-dirty the dirty build is not refused for being dirty; the scan gate still applies."""
    (build_dir / "image-cpu.json").write_text(json.dumps({"id": "sha256:abc", "variant": "cpu", "labels": DIRTY}))
    with pytest.raises(UserError, match="has not passed the scan gate"):
        push.push_all(["cpu"], explicit=True, out_dir=build_dir, environ={}, allow_dirty=True)
