"""The workflows keep the project's rules: hardened, pinned, thin, and in step with the noxfile.

zizmor and actionlint (`nox -s lint`) check security and syntax; these tests check the rules of
this project that neither knows: every `run:` is one call of a nox session or a ci/ script, every
action is pinned by SHA with its version, the matrix names the noxfile's variants, and the gate
needs every job but push.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CI = ROOT / ".github" / "workflows" / "ci.yml"
# What a `run:` may be: one call of a nox session (as root for the image jobs) or of a ci/ script.
RUN = re.compile(
    r'^(sudo -E -H env "PATH=\$PATH" )?bash ci/nox\.sh -s \S+( \S+)*$'
    r"|^bash ci/[\w-]+\.sh$"
    r"|^python3? ci/\w+\.py( \S+)*$"
    r"|^\.nox/_locked/bin/python -m ci\.\w+( \S+)*$"
)
USES = re.compile(r"uses:\s*(\S+?)@(\S+)(.*)$")
SESSION = re.compile(r"-s \"?([a-z_]+)(\(\$\{VARIANT\}\))?\"?")


def load(path: Path) -> dict:
    """A workflow as a dict (PyYAML reads the `on` key as True: put it back)."""
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict):
    """(job id, job, step) for every step."""
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield name, job, step


def noxfile_sessions() -> dict[str, bool]:
    """Session name -> whether it is parametrized by `variant`, read from noxfile.py without nox."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    sessions = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        calls = [d for d in node.decorator_list if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)]
        if any(c.func.attr == "session" for c in calls):
            sessions[node.name] = any(
                c.func.attr == "parametrize" and c.args and getattr(c.args[0], "value", None) == "variant"
                for c in calls
            )
    return sessions


def noxfile_variants() -> list[str]:
    """The VARIANTS list of noxfile.py."""
    for node in ast.parse((ROOT / "noxfile.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "VARIANTS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("noxfile.py has no VARIANTS")


def test_there_is_a_workflow():
    """The CI workflow exists (the other tests would pass vacuously without it)."""
    assert CI in WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_default_permissions_and_every_job_asks_for_its_own(path):
    """`permissions: {}` at the top; each job grants itself what it needs and has a timeout."""
    workflow = load(path)
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"job {name} has no permissions block"
        assert isinstance(job.get("timeout-minutes"), int), f"job {name} has no timeout-minutes"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_by_sha_with_their_version(path):
    """Every `uses:` names a 40-character commit SHA and a `# vX.Y.Z` comment."""
    for line in path.read_text().splitlines():
        if match := USES.search(line):
            action, ref, comment = match.groups()
            assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{action} is pinned to {ref}, not a commit SHA"
            assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", comment), f"{action}@{ref} lacks a `# vX.Y.Z` comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkout_never_persists_the_token(path):
    """actions/checkout always runs with persist-credentials: false."""
    for name, _, step in steps(load(path)):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, f"job {name}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_run_steps_only_call_nox_or_ci_scripts(path):
    """No logic lives only in YAML: each `run:` is one line calling a session or a ci/ script."""
    for name, _, step in steps(load(path)):
        if "run" in step:
            assert RUN.match(step["run"].strip()), f"job {name}: `{step['run']}` is more than a call"


def test_sessions_called_exist_in_the_noxfile():
    """Every `nox -s NAME` names a session; `NAME(${VARIANT})` one parametrized by variant."""
    sessions = noxfile_sessions()
    for name, _, step in steps(load(CI)):
        for session, per_variant in SESSION.findall(step.get("run", "")):
            assert session in sessions, f"job {name} calls `nox -s {session}`, which noxfile.py lacks"
            assert sessions[session] == bool(per_variant), f"job {name}: {session} and its variant parameter"


def test_matrix_variants_are_the_noxfile_variants():
    """Each variant matrix lists exactly noxfile.py VARIANTS."""
    variants = noxfile_variants()
    for name, job in load(CI)["jobs"].items():
        matrix = job.get("strategy", {}).get("matrix", {})
        if "variant" in matrix:
            assert matrix["variant"] == variants, f"job {name}"


def test_gate_needs_every_job_but_push():
    """A job the gate does not need could fail without blocking a merge."""
    jobs = load(CI)["jobs"]
    assert set(jobs["gate"]["needs"]) == set(jobs) - {"gate", "push"}
    assert jobs["push"]["needs"] == ["gate"]


# The only write permissions in the workflow, and why: everything else reads.
WRITES = {
    "push": {"packages", "id-token", "attestations"},  # push to ghcr.io; keyless signing; provenance
    "scan": {"security-events"},  # upload trivy's SARIF to code scanning (no code, no packages)
}


def test_only_push_may_write_packages_sign_or_see_secrets():
    """Pull-request jobs get a read-only token (scan may add code-scanning alerts) and no secrets."""
    workflow = load(CI)
    for name, job in workflow["jobs"].items():
        writes = {k for k, v in job["permissions"].items() if v == "write"}
        assert writes == WRITES.get(name, set()), f"job {name}"
        uses_secrets = "secrets." in yaml.safe_dump(job) or "github.token" in yaml.safe_dump(job)
        assert uses_secrets == (name == "push"), f"job {name}"
    assert workflow["jobs"]["push"]["if"] == "${{ github.event_name == 'push' }}"
    assert set(workflow["on"]["push"]) == {"branches", "tags"}


def _step_index(job: dict, predicate) -> int:
    matches = [i for i, step in enumerate(job["steps"]) if predicate(step)]
    assert len(matches) == 1, matches
    return matches[0]


def test_push_signs_attests_and_verifies_the_pushed_digest_in_that_order():
    """After `nox -s push`: cosign signature and SBOM attestation, SLSA provenance, then a verification step."""
    job = load(CI)["jobs"]["push"]

    def run(text):
        return lambda step: text in step.get("run", "")

    def uses(action):
        return lambda step: step.get("uses", "").startswith(f"{action}@")

    order = [
        _step_index(job, run("nox.sh -s push")),
        _step_index(job, uses("sigstore/cosign-installer")),
        _step_index(job, run("ci/signing.py outputs")),
        _step_index(job, run("ci/signing.py sign")),
        _step_index(job, uses("actions/attest-build-provenance")),
        _step_index(job, run("ci/signing.py verify")),
    ]
    assert order == sorted(order)
    attest = job["steps"][order[4]]["with"]
    assert attest["subject-digest"] == "${{ steps.pushed.outputs.digest }}"  # by digest, never a tag


def test_the_scan_job_gates_the_push_and_uploads_sarif():
    """scan runs `nox -s 'scan(<variant>)'`, uploads trivy's SARIF, and push downloads its verdict."""
    jobs = load(CI)["jobs"]
    scan_runs = [step.get("run", "") for step in jobs["scan"]["steps"]]
    assert any('-s "scan(${VARIANT})"' in r for r in scan_runs)
    assert any(step.get("uses", "").startswith("github/codeql-action/upload-sarif@") for step in jobs["scan"]["steps"])
    downloads = [step["with"]["name"] for step in jobs["push"]["steps"] if "download-artifact" in step.get("uses", "")]
    assert "scan-${{ matrix.variant }}" in downloads
