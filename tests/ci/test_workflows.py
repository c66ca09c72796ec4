"""The workflows keep the project's rules: hardened, pinned, thin, and in step with the noxfile.

zizmor and actionlint (`nox -s lint`) check security and syntax; these tests check the rules of
this project that neither knows: every `run:` is one call of a nox session or a ci/ script, every
action is pinned by SHA with its version, the matrix names the noxfile's variants, the gate needs
every job but push, only `repro` trains and only `build` builds (the later jobs get their outputs),
and the weekly base-lock workflow writes only from the job that opens its pull request.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from ci.image import archive as image_archive

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CI = ROOT / ".github" / "workflows" / "ci.yml"
BASE_LOCK = ROOT / ".github" / "workflows" / "base-lock.yml"
# What a `run:` may be: one call of a nox session (as root for the image jobs) or of a ci/ script.
RUN = re.compile(
    r'^(sudo -E -H env "PATH=\$PATH" )?bash ci/nox\.sh -s \S+( \S+)*$'
    r"|^bash ci/[\w-]+\.sh$"
    r"|^python3? ci/runner/\w+\.py( \S+)*$"  # the runner's own Python: standard-library scripts only
    r'|^(sudo -E -H env "PATH=\$PATH" )?\.nox/_locked/bin/python -m ci\.[\w.]+( \S+)*$'
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


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_artifacts_can_be_uploaded_again_by_a_re_run(path):
    """upload-artifact v4+ refuses a second upload of a name in one run: a re-run job must replace its own."""
    for name, _, step in steps(load(path)):
        if step.get("uses", "").startswith("actions/upload-artifact@"):
            assert step["with"].get("overwrite") is True, f"job {name}: {step['with']['name']}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_sessions_called_exist_in_the_noxfile(path):
    """Every `nox -s NAME` names a session; `NAME(${VARIANT})` one parametrized by variant."""
    sessions = noxfile_sessions()
    for name, _, step in steps(load(path)):
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
        _step_index(job, run("ci/runner/signing.py outputs")),
        _step_index(job, run("ci/runner/signing.py sign")),
        _step_index(job, uses("actions/attest-build-provenance")),
        _step_index(job, run("ci/runner/signing.py verify")),
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


def _runs(job: dict) -> list[str]:
    return [step.get("run", "") for step in job.get("steps", [])]


def _downloads(job: dict) -> dict[str, str]:
    """Artifact name -> the path it is downloaded to."""
    return {
        step["with"]["name"]: step["with"].get("path", ".")
        for step in job.get("steps", [])
        if step.get("uses", "").startswith("actions/download-artifact@")
    }


def _uploads(job: dict) -> dict[str, str]:
    """Artifact name -> the path(s) uploaded."""
    return {
        step["with"]["name"]: step["with"]["path"]
        for step in job.get("steps", [])
        if step.get("uses", "").startswith("actions/upload-artifact@")
    }


def _upstream(jobs: dict, name: str) -> set[str]:
    """Every job `name` waits for, directly or through another."""
    needs = jobs[name].get("needs", [])
    found = set(needs if isinstance(needs, list) else [needs])
    for need in list(found):
        found |= _upstream(jobs, need)
    return found


def pipeline_sessions() -> set[str]:
    """The sessions that run the DVC pipeline (repro, and those that require it, directly or not).

    A job that calls one trains unless it has repro's outputs. scan is not among them: it runs the
    pipeline only when no image is handed to it (IMAGE_ARCHIVE_DIR), which the next tests check.
    """
    requires = {}
    for node in ast.parse((ROOT / "noxfile.py").read_text()).body:
        if isinstance(node, ast.FunctionDef):
            for call in (d for d in node.decorator_list if isinstance(d, ast.Call)):
                for keyword in call.keywords:
                    if keyword.arg == "requires":
                        names = ast.literal_eval(keyword.value)
                        requires[node.name] = {name.split("(")[0].split("-")[0] for name in names}
    found, grew = {"repro"}, True
    while grew:
        before = len(found)
        found |= {name for name, needed in requires.items() if needed & found}
        grew = len(found) > before
    return found


DVC_OUTPUTS = "dvc-outputs"


def test_only_repro_trains_and_the_jobs_that_need_the_model_get_its_outputs():
    """repro packs and uploads the DVC outputs; each other job running the pipeline unpacks them, then verifies."""
    jobs = load(CI)["jobs"]
    repro = jobs["repro"]
    assert any(r.endswith("-m ci.runner.dvc_outputs pack") for r in _runs(repro))
    assert _uploads(repro) == {DVC_OUTPUTS: "build/dvc-outputs.tar"}
    assert DVC_OUTPUTS not in _downloads(repro)
    consumers, pipeline = set(), pipeline_sessions()
    assert {"repro", "build", "test", "reproduce"} <= pipeline
    for name, job in jobs.items():
        sessions = {s for run in _runs(job) for s, _ in SESSION.findall(run)}
        assert name == "repro" or "repro" not in sessions, f"job {name} runs `nox -s repro`: only repro trains"
        if name == "repro":
            continue
        assert DVC_OUTPUTS not in _uploads(job), f"job {name}: only repro hands over DVC outputs"
        if not sessions & pipeline:
            continue
        consumers.add(name)
        assert "repro" in _upstream(jobs, name), f"job {name} must wait for repro's outputs"
        assert _downloads(job).get(DVC_OUTPUTS) == "build", f"job {name}"
        order = [
            _step_index(job, lambda s: s.get("with", {}).get("name") == DVC_OUTPUTS),
            _step_index(job, lambda s: s.get("run") == "python ci/runner/dvc_outputs.py unpack"),
            _step_index(job, lambda s: "bash ci/nox.sh -s" in s.get("run", "")),
            _step_index(job, lambda s: s.get("run") == "python ci/runner/dvc_outputs.py verify"),
        ]
        assert order == sorted(order), f"job {name}: download, unpack, the session, then verify"
    assert consumers == {"build", "inprocess", "test", "reproduce", "triton", "triton_image"}


def test_each_variant_is_built_once_and_test_scan_and_push_load_that_image():
    """Only build runs the build and saves it; test, scan and push download it and load it by IMAGE_ARCHIVE_DIR."""
    jobs = load(CI)["jobs"]
    archive_dir = image_archive.ARCHIVE_DIR.relative_to(ROOT).as_posix()
    artifact = "image-${{ matrix.variant }}"
    for name, job in jobs.items():
        builds = [r for r in _runs(job) if '-s "build(' in r or "ci.image.build" in r]
        assert bool(builds) == (name == "build"), f"job {name} builds an image: only `build` may"
    build_runs = _runs(jobs["build"])
    assert 'sudo -E -H env "PATH=$PATH" bash ci/nox.sh -s "build(${VARIANT})"' in build_runs
    assert any(r.endswith('-m ci.image.archive save --variant "${VARIANT}"') for r in build_runs)
    assert _uploads(jobs["build"])[artifact].rstrip("/") == archive_dir
    for name in ("test", "scan", "push"):
        job = jobs[name]
        assert job.get("env", {}).get(image_archive.ENV_VAR) == archive_dir, f"job {name}"
        assert _downloads(job)[artifact] == archive_dir, f"job {name}"
        assert "build" in _upstream(jobs, name), f"job {name}"
    assert DVC_OUTPUTS not in _downloads(jobs["scan"])  # the image carries its model; scan trains nothing


def test_push_has_no_build_and_no_rebuild_check():
    """push publishes the loaded image: no build session, no base rootfs, no rebuild-and-compare."""
    push = load(CI)["jobs"]["push"]
    text = yaml.safe_dump(push)
    for forbidden in ("build(", "ci.image.build", "workflow_same_image", "base-${{", "tested-"):
        assert forbidden not in text, forbidden
    assert set(_downloads(push)) == {"image-${{ matrix.variant }}", "scan-${{ matrix.variant }}"}


def test_the_sessions_load_a_handed_over_image_instead_of_building():
    """test and scan build or load (IMAGE_ARCHIVE_DIR); push loads first; scan then skips `dvc repro`."""
    source = (ROOT / "noxfile.py").read_text()
    functions = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}

    def body(name: str) -> str:
        return ast.get_source_segment(source, functions[name]) or ""

    loader = body("build_or_load")
    assert f'"{image_archive.ENV_VAR}"' in loader
    assert '"ci.image.archive", "load"' in loader
    assert '"ci.image.build"' in loader
    for name in ("test", "scan"):
        assert "build_or_load(session, bin_dir, variant)" in body(name)
        assert '"ci.image.build"' not in body(name)
    # Without a handed-over image scan trains first, except for the tracking server image (no model).
    assert f'if not os.environ.get("{image_archive.ENV_VAR}") and variant in VARIANTS:' in body("scan")
    assert '"ci.image.archive", "load"' in body("push")


def test_the_base_lock_workflow_runs_weekly_and_only_its_pull_request_job_writes():
    """Scheduled or manual; the nox job only reads; the PR job writes contents and pull requests, and runs no code."""
    workflow = load(BASE_LOCK)
    assert set(workflow["on"]) == {"schedule", "workflow_dispatch"}
    assert len(workflow["on"]["schedule"]) == 1
    jobs = workflow["jobs"]
    assert jobs["base_lock"]["permissions"] == {"contents": "read"}
    assert 'sudo -E -H env "PATH=$PATH" bash ci/nox.sh -s base_lock' in _runs(jobs["base_lock"])
    assert _uploads(jobs["base_lock"]) == {"base-lock": "base-packages.lock\nparams.yaml\n"}
    pull_request = jobs["pull-request"]
    assert pull_request["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert pull_request["needs"] == ["base_lock"]
    assert not any(_runs(pull_request)), "the job holding a write token runs no project code"
    create = pull_request["steps"][_step_index(pull_request, lambda s: "create-pull-request@" in s.get("uses", ""))]
    assert create["with"]["add-paths"].split() == ["base-packages.lock", "params.yaml"]


def test_the_kind_job_deploys_the_cpu_image_build_saved_and_blocks_the_gate():
    """kind runs `nox -s kind` on build's cpu archive (loaded, never rebuilt), installs kind with Go
    (no cache restored), writes nothing, and the gate needs it."""
    jobs = load(CI)["jobs"]
    job = jobs["kind"]
    assert _runs(job)[-1] == "bash ci/nox.sh -s kind"
    assert job["env"][image_archive.ENV_VAR] == image_archive.ARCHIVE_DIR.relative_to(ROOT).as_posix()
    assert _downloads(job) == {"image-cpu": job["env"][image_archive.ENV_VAR]}
    assert "build" in _upstream(jobs, "kind")
    (setup_go,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-go@")]
    assert setup_go["with"]["cache"] is False
    assert job["permissions"] == {"contents": "read"}
    assert "kind" in jobs["gate"]["needs"]


def test_the_compose_job_runs_the_stack_on_the_cpu_image_build_saved_and_blocks_the_gate():
    """compose runs `nox -s compose` as root (it builds the tracking server's base) on build's cpu archive,
    with repro's DVC outputs (the golden rows), writes nothing, and the gate needs it."""
    jobs = load(CI)["jobs"]
    job = jobs["compose"]
    assert _runs(job)[-2] == 'sudo -E -H env "PATH=$PATH" bash ci/nox.sh -s compose'
    assert job["env"][image_archive.ENV_VAR] == image_archive.ARCHIVE_DIR.relative_to(ROOT).as_posix()
    assert _downloads(job) == {"image-cpu": job["env"][image_archive.ENV_VAR], DVC_OUTPUTS: "build"}
    assert {"build", "repro"} <= _upstream(jobs, "compose")
    assert job["permissions"] == {"contents": "read"}
    assert "compose" in jobs["gate"]["needs"]
