"""The shape of ci/: stage packages, the runner's standard-library scripts, and imports that run one way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ci.project import ROOT

CI = ROOT / "ci"
STAGES = ("model", "image", "gate", "publish", "lint", "bench", "triton", "deploy", "compose", "runner")
# Shared by the stages, beside them: facts about the checkout, the records, text, the engine, lock files.
SHARED = {"__init__", "project", "records", "text", "engine", "locks", "processes"}
# What a ci/ module must never pull in: a test helper, or the pipeline's and the service's heavy libraries.
FORBIDDEN = ("tests", "numpy", "tensorflow", "keras", "sklearn", "onnx", "onnxruntime", "bentoml", "pandas")
# The bare ONNX Runtime server `nox -s bench` runs inside the image: it is the baseline, so it imports them.
RUNS_IN_THE_IMAGE = {"ci.bench.baseline"}
# The model Triton's Python backend runs in its stub process: it imports numpy, onnxruntime and
# triton_python_backend_utils, which exists only inside that stub.
RUNS_IN_TRITON = {"ci.triton.model"}


def modules() -> list[str]:
    """Every Python module under ci/, dotted."""
    return sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in CI.rglob("*.py"))


def test_every_module_is_in_a_stage_package_or_shared():
    """The tree shows the flow: a module lives in its stage's package, or is one of the few shared ones."""
    top = {p.stem for p in CI.glob("*.py")}
    assert top == SHARED, f"put {sorted(top - SHARED)} into a stage package ({', '.join(STAGES)})"
    packages = {p.name for p in CI.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(STAGES)
    for stage in STAGES:
        assert (CI / stage / "__init__.py").read_text().startswith('"""'), f"ci/{stage}/ needs a docstring"


def test_no_module_imports_a_test_helper_or_a_heavy_library():
    """Importing any ci/ module (in a fresh interpreter) loads none of FORBIDDEN: tools never depend on tests,
    and the pipeline's and the service's libraries stay out of scripts that only read files and run docker."""
    checked = [name for name in modules() if name not in RUNS_IN_THE_IMAGE | RUNS_IN_TRITON]
    code = (
        "import importlib, json, sys\n"
        f"for name in {checked!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("script", sorted(p.name for p in (CI / "runner").glob("[!_]*.py")))
def test_runner_scripts_run_on_a_bare_python(script, tmp_path):
    """Each script the workflow runs on the runner's own Python starts with the standard library alone:
    `python -S` (no site-packages, so no PyYAML, no numpy) from outside the checkout, as a file."""
    out = subprocess.run(
        [sys.executable, "-S", str(CI / "runner" / script), "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_the_workflow_runs_only_runner_scripts_on_its_own_python():
    """`python ci/...py` steps in the workflows name scripts in ci/runner/ (checked above), nothing else."""
    calls = {
        line.split()[1]
        for path in (ROOT / ".github" / "workflows").glob("*.yml")
        for line in (s.strip().removeprefix("run: ") for s in path.read_text().splitlines())
        if line.startswith(("python ci/", "python3 ci/"))
    }
    assert calls
    assert all(Path(call).parent == Path("ci/runner") for call in calls), calls
