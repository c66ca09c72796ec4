"""Every Rego policy in policies/ with a passing and a failing input; a planted violation names its rule."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from ci.gate import policy
from ci.project import ROOT, bento_spec

DOCKERFILE = bento_spec().dockerfile

BASE = "ml-model-image/breast-cancer-base:e99c9c0e8f96f221"
DIGEST = "sha256:" + "ab" * 32
GOOD_CONFIG = {
    "Id": "sha256:" + "1" * 64,
    "Config": {
        "User": "10001:10001",
        "Healthcheck": {"Test": ["CMD", "/opt/venv/bin/python", "-c", "..."]},
        "Labels": {
            "org.opencontainers.image.title": "ml-model-image/breast-cancer",
            "org.opencontainers.image.source": "https://github.com/you/ml-model-image",
            "org.opencontainers.image.revision": "432e2fa29f81a035fdb9f792324770f81ca53345",
            "org.opencontainers.image.version": "6587079eeddb745a-dd2e5a0b",
            "org.opencontainers.image.created": "2026-11-23T18:56:32Z",
        },
    },
}
GOOD_FILES = [
    {"path": "usr/bin/python3.11", "type": "file", "size": 1},
    {"path": "usr/bin/ld.so", "type": "symlink", "size": 0},  # the dynamic loader, not a linker
    {"path": "usr/bin/dpkg", "type": "file", "size": 1},
    {"path": "opt/venv/bin/bentoml", "type": "file", "size": 1},
    {"path": "var/lib/apt/lists/lock", "type": "file", "size": 0},
    {"path": "var/lib/apt/lists/partial", "type": "dir", "size": 0},
    {"path": "var/cache/apt/archives/partial", "type": "dir", "size": 0},
    {"path": "opt/venv/lib/python3.11/site-packages/tensorflow/include/gcc_compat.h", "type": "file", "size": 1},
]
GOOD_PACKAGES = [
    {"name": "numpy", "version": "2.4.6", "type": "python", "licenses": ["BSD-3-Clause AND 0BSD AND MIT"]},
    {"name": "packaging", "version": "26.3", "type": "python", "licenses": ["Apache-2.0 OR BSD-2-Clause"]},
    {"name": "keras", "version": "3.15.1", "type": "python", "licenses": ["Apache License 2.0"]},
    {"name": "namex", "version": "0.1.0", "type": "python", "licenses": []},  # reviewed in licenses.yaml
    {"name": "bash", "version": "5.2.15-2+b7", "type": "deb", "licenses": ["GPL-3.0-or-later"]},  # Debian: not checked
]


def dockerfile(text: str) -> dict:
    """A Dockerfile parsed as the scan parses it, with the base build argument the build passes."""
    return policy.parse_dockerfile(text, "Dockerfile", {"BASE_IMAGE": BASE, "UID": "10001"})


GOOD_DOCKERFILE = f"""\
ARG BASE_IMAGE
FROM python@{DIGEST} AS wheels
RUN true
FROM ${{BASE_IMAGE}}
ARG UID=10001
COPY --from=wheels /w /w
ADD local.tar /opt/
USER ${{UID}}:${{UID}}
HEALTHCHECK CMD ["/bin/true"]
"""


@pytest.fixture(name="good")
def fixture_good() -> dict:
    """An input every policy passes."""
    return {
        "dockerfile": dockerfile(GOOD_DOCKERFILE),
        "config": copy.deepcopy(GOOD_CONFIG),
        "files": copy.deepcopy(GOOD_FILES),
        "packages": copy.deepcopy(GOOD_PACKAGES),
        "build": {"local_bases": [BASE]},
    }


def denials(document: dict) -> dict[str, list[str]]:
    """rule -> messages, for every policy; a policy that errs fails the test."""
    results = policy.evaluate(document)
    errors = {r.rule: r.error for r in results if r.error}
    assert not errors, errors
    return {r.rule: r.denials for r in results}


def only(document: dict, rule: str) -> list[str]:
    """The messages of `rule`, checking that no other policy objects."""
    found = denials(document)
    others = {name: msgs for name, msgs in found.items() if msgs and name != rule}
    assert not others, others
    assert found[rule], f"{rule} passed the planted violation"
    assert all(msg.startswith(f"{rule}: ") for msg in found[rule])
    return found[rule]


def test_every_policy_has_a_passing_input(good):
    """The good input passes every policy (and there are policies to pass)."""
    found = denials(good)
    assert set(found) == {p.stem for p in policy.policy_files()}
    assert {rule: msgs for rule, msgs in found.items() if msgs} == {}


def test_the_projects_dockerfile_passes_the_dockerfile_policies(good):
    """bentos/classifier/Dockerfile, parsed with the build's arguments, passes every policy."""
    good["dockerfile"] = policy.parse_dockerfile(
        DOCKERFILE.read_text(), str(DOCKERFILE.relative_to(ROOT)), {"BASE_IMAGE": BASE, "UID": "10001"}
    )
    found = denials(good)
    assert {rule: msgs for rule, msgs in found.items() if msgs} == {}


# Planted violations, one per policy rule: (rule, how to break the good input, words of the message).
def _no_user(d):
    d["dockerfile"] = dockerfile(GOOD_DOCKERFILE.replace("USER ${UID}:${UID}\n", ""))


def _user_root(d):
    d["dockerfile"] = dockerfile(GOOD_DOCKERFILE + "USER root\n")


def _config_root(d):
    d["config"]["Config"]["User"] = ""


def _no_healthcheck(d):
    d["dockerfile"] = dockerfile(GOOD_DOCKERFILE.replace('HEALTHCHECK CMD ["/bin/true"]\n', ""))


def _healthcheck_none(d):
    d["dockerfile"] = dockerfile(GOOD_DOCKERFILE + "HEALTHCHECK NONE\n")


def _config_no_healthcheck(d):
    del d["config"]["Config"]["Healthcheck"]


def _add_url(d):
    d["dockerfile"] = dockerfile(GOOD_DOCKERFILE + "ADD https://example.invalid/model.tgz /opt/\n")


def _add_url_json(d):
    d["dockerfile"] = dockerfile(GOOD_DOCKERFILE + 'ADD ["http://example.invalid/a", "/a"]\n')


def _from_tag(d):
    d["dockerfile"] = dockerfile(GOOD_DOCKERFILE.replace(f"python@{DIGEST}", "python:3.11-slim"))


def _base_not_local(d):
    d["build"]["local_bases"] = []


def _no_revision(d):
    del d["config"]["Config"]["Labels"]["org.opencontainers.image.revision"]


def _no_labels(d):
    d["config"]["Config"]["Labels"] = None


def _file(path: str, kind: str = "file"):
    def plant(d):
        d["files"].append({"path": path, "type": kind, "size": 1})

    return plant


def _package(name: str, version: str, *licenses: str):
    def plant(d):
        d["packages"].append({"name": name, "version": version, "type": "python", "licenses": list(licenses)})

    return plant


VIOLATIONS = [
    ("non_root_user", _no_user, "has no USER"),
    ("non_root_user", _user_root, "ends on `USER root`"),
    ("non_root_user", _config_root, 'image config runs as "" (root)'),
    ("healthcheck", _no_healthcheck, "has no HEALTHCHECK"),
    ("healthcheck", _healthcheck_none, "HEALTHCHECK NONE"),
    ("healthcheck", _config_no_healthcheck, "no health check"),
    ("no_add_from_url", _add_url, "ADDs https://example.invalid/model.tgz"),
    ("no_add_from_url", _add_url_json, "ADDs http://example.invalid/a"),
    ("base_pinned", _from_tag, "`FROM python:3.11-slim`"),
    ("base_pinned", _base_not_local, "`FROM ${BASE_IMAGE}`"),
    ("oci_labels", _no_revision, "org.opencontainers.image.revision"),
    ("oci_labels", _no_labels, "org.opencontainers.image.title"),
    ("no_build_tools", _file("usr/bin/gcc-12"), "/usr/bin/gcc-12"),
    ("no_build_tools", _file("usr/bin/x86_64-linux-gnu-g++-12", "symlink"), "g++"),
    ("no_build_tools", _file("usr/lib/gcc/x86_64-linux-gnu/12/cc1"), "/usr/lib/gcc/x86_64-linux-gnu/12/cc1"),
    ("no_build_tools", _file("opt/venv/lib/python3.11/site-packages/nvidia/cuda_nvcc/bin/ptxas"), "ptxas"),
    ("no_build_tools", _file("usr/bin/git"), "git (/usr/bin/git)"),
    ("no_build_tools", _file("home/bentoml/bento/.git", "dir"), "a git repository"),
    ("no_build_tools", _file("var/cache/apt/archives/curl_7.88_amd64.deb"), ".deb"),
    ("no_build_tools", _file("var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease"), "apt/lists"),
    ("no_build_tools", _file("root/.cache/pip/http-v2/a/b"), ".cache/pip"),
    ("no_build_tools", _file("wheels/numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl"), ".whl"),
    ("licenses", _package("readline-py", "1.0", "GPL-3.0-only"), 'readline-py 1.0 is licensed "GPL-3.0-only"'),
    ("licenses", _package("mystery", "0.1"), "mystery 0.1 declares no licence"),
    ("licenses", _package("namex", "0.2.0"), "namex 0.2.0 declares no licence"),  # reviewed only for 0.1.0
    ("licenses", _package("mixed", "1", "MIT AND GPL-2.0-only"), '"MIT AND GPL-2.0-only"'),
    ("licenses", _package("cuda-ish", "1", "LicenseRef-NVIDIA-Proprietary"), "LicenseRef-NVIDIA-Proprietary"),
]


@pytest.mark.parametrize(
    ("rule", "plant", "words"), VIOLATIONS, ids=[f"{rule}-{i}" for i, (rule, _, _) in enumerate(VIOLATIONS)]
)
def test_a_planted_violation_fails_its_rule_with_a_message_naming_it(good, rule, plant, words):
    """Each violation fails exactly its own policy, and the message starts with the rule's name."""
    plant(good)
    messages = only(good, rule)
    assert any(words in m for m in messages), messages


@pytest.mark.parametrize(
    "licenses",
    [["MIT"], ["Apache-2.0 OR GPL-3.0-only"], ["Apache 2.0"], ["(MIT AND Zlib)"], ["BSD"]],
)
def test_allowed_licences_and_expressions_pass(good, licenses):
    """Allowed ids, an OR with one allowed side, aliases of free-text names, parenthesised ANDs."""
    _package("some-package", "1.0", *licenses)(good)
    assert denials(good)["licenses"] == []


def test_the_nvidia_licence_is_allowed_only_for_nvidia_cuda_wheels(good):
    """The NVIDIA runtime wheels' proprietary licence is an exception scoped to the CUDA wheels the
    CUDA image installs; any other package with it is denied."""
    _package("nvidia-cudnn-cu13", "9.28.1.4", "LicenseRef-NVIDIA-Proprietary")(good)
    _package("nvidia-curand", "10.4.5.25", "NVIDIA Proprietary Software")(good)
    _package("nvidia-cublas", "13.10.0.20", "LicenseRef-NVIDIA-Proprietary")(good)
    assert denials(good)["licenses"] == []
    _package("nvidia-something-else", "1.0", "LicenseRef-NVIDIA-Proprietary")(good)
    assert len(denials(good)["licenses"]) == 1


def test_a_base_pinned_by_digest_and_an_earlier_stage_pass(good):
    """FROM name@sha256:..., FROM scratch and FROM <earlier stage> are pinned."""
    text = f"FROM python@{DIGEST} AS a\nFROM a AS b\nFROM scratch\nCOPY --from=b /x /x\nUSER 1\nHEALTHCHECK CMD x\n"
    good["dockerfile"] = dockerfile(text)
    assert denials(good)["base_pinned"] == []


def test_a_later_stage_name_does_not_pin_an_earlier_from(good):
    """`FROM later` before a stage named `later` exists refers to an image, not the stage."""
    good["dockerfile"] = dockerfile("FROM later\nRUN true\nFROM scratch AS later\nUSER 1\nHEALTHCHECK CMD x\n")
    assert any("`FROM later`" in m for m in denials(good)["base_pinned"])


def test_a_policy_in_the_old_syntax_is_an_error_not_a_pass(tmp_path, good):
    """`deny[msg] { }` without rego.v1 reads as an object in regopy: reported as an error, never as passed."""
    old = tmp_path / "old_style.rego"
    old.write_text('package old_style\n\ndeny[msg] {\n\tinput.config\n\tmsg := "x"\n}\n')
    (result,) = policy.evaluate(good, [old])
    assert result.error
    assert "not a set of messages" in result.error


def test_a_broken_policy_is_an_error_and_the_others_still_run(tmp_path, good):
    """A syntax error fails that policy's check; the other policies are still evaluated."""
    broken = tmp_path / "broken.rego"
    broken.write_text("package broken\nimport rego.v1\ndeny contains msg if {\n  msg :=\n}\n")
    good_policy = policy.POLICY_DIR / "healthcheck.rego"
    results = {r.rule: r for r in policy.evaluate(good, [broken, good_policy])}
    assert results["broken"].error
    assert results["healthcheck"].error is None
    assert results["healthcheck"].denials == []


def test_a_policy_with_the_wrong_package_is_an_error(tmp_path, good):
    """A file whose package is not its name would be undefined: an error, not a pass."""
    wrong = tmp_path / "named.rego"
    wrong.write_text('package other\nimport rego.v1\ndeny contains "x" if false\n')
    (result,) = policy.evaluate(good, [wrong])
    assert "undefined" in (result.error or "")


def test_dockerfile_parsing_resolves_arguments_and_keeps_line_numbers():
    """ARG defaults and build arguments resolve in FROM and USER; continued lines keep their first line number."""
    parsed = policy.parse_dockerfile(
        "# comment\nARG BASE=debian@sha256:00\nFROM ${BASE} AS build\nARG UID=7\n"
        "RUN a \\\n    && b\nUSER ${UID}:${GID:-7}\n",
        "Dockerfile",
        {"UID": "10001"},
    )
    (stage,) = parsed["stages"]
    assert (stage["line"], stage["from"], stage["image"], stage["name"]) == (3, "${BASE}", "debian@sha256:00", "build")
    run, user = stage["instructions"][1:]
    assert (run["cmd"], run["line"]) == ("RUN", 5)
    assert (user["value"], user["line"]) == ("10001:7", 7)


def test_cyclonedx_components_become_packages():
    """purl type, version and licences (ids, names, expressions) are read from CycloneDX."""
    bom = {
        "components": [
            {"name": "adduser", "version": "3.134", "purl": "pkg:deb/debian/adduser@3.134", "licenses": []},
            {
                "name": "aiohttp",
                "version": "3.14.5",
                "purl": "pkg:pypi/aiohttp@3.14.5",
                "licenses": [{"expression": "Apache-2.0 AND MIT"}],
            },
            {
                "name": "keras",
                "version": "3.15.1",
                "purl": "pkg:pypi/keras@3.15.1",
                "licenses": [{"license": {"name": "Apache License 2.0"}}],
            },
            {"name": "debian", "version": "12", "type": "operating-system"},
        ]
    }
    assert [(p["name"], p["type"], p["licenses"]) for p in policy.packages_from_cyclonedx(bom)] == [
        ("adduser", "deb", []),
        ("aiohttp", "python", ["Apache-2.0 AND MIT"]),
        ("keras", "python", ["Apache License 2.0"]),
    ]


def test_every_policy_file_is_a_v1_package_named_after_its_file():
    """`import rego.v1`, `deny contains`, and `package <file name>` in every policy (see STYLE.md)."""
    for path in policy.policy_files():
        text = path.read_text()
        assert f"package {path.stem}\n" in text
        assert "import rego.v1" in text
        assert "deny contains msg if" in text


def test_every_reviewed_licence_names_its_evidence():
    """A hand-reviewed package states where its licence was read."""
    data = policy.policy_data()["licenses"]
    assert all(entry["evidence"] for entry in data["reviewed"])
    assert all(entry["reason"] for entry in data["exceptions"])


def test_policy_dir_is_the_repositorys():
    """The policies the scan evaluates are the committed ones."""
    assert Path(ROOT) / "policies" == policy.POLICY_DIR
