"""Facts about this checkout that every ci/ script shares: paths, params, git, and how to fail.

Names, versions and paths are read from params.yaml or derived here, once; scripts import them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ci.records import BUILD_DIR, ROOT, UserError, sha256_file
from ci.text import human_bytes, table  # noqa: F401 (every stage takes them from here)
from pipeline import artifacts

# ROOT, BUILD_DIR and UserError are defined in ci/records.py (standard library only), so that the
# scripts run on the runner's own Python share them; every other script takes them from here.
PARAMS_FILE = ROOT / "params.yaml"
CACHE_DIR = ROOT / ".cache"  # kept between builds: base rootfs, wheelhouse (git-ignored)
BENTOML_HOME = BUILD_DIR / "bentoml"  # a project-local BentoML store, not ~/bentoml
BENTO_DIR = BUILD_DIR / "bento"  # the exported, normalized Bento the image is built from
# The pipeline's outputs, where pipeline/artifacts.py (and dvc.yaml) put them.
MANIFEST = ROOT / artifacts.MANIFEST_JSON
SERVED_MODEL = ROOT / artifacts.ONNX_FILE  # what the images serve; manifest.json's sha256 is its hash
GOLDEN = ROOT / artifacts.GOLDEN_JSON
METRICS = ROOT / artifacts.METRICS_JSON
SERVE_LOCK_NAME = "requirements-serve.lock"
SERVE_LOCK = ROOT / SERVE_LOCK_NAME
DVC_LOCK = ROOT / "dvc.lock"  # what the pipeline ran with and produced (hashes), committed


def params() -> dict[str, Any]:
    """params.yaml as a dict."""
    if not PARAMS_FILE.is_file():
        raise UserError(f"{PARAMS_FILE} is missing: run from a checkout of this repository.")
    return yaml.safe_load(PARAMS_FILE.read_text()) or {}


def section(name: str) -> dict[str, Any]:
    """One section of params.yaml, with a clear error when it is absent."""
    value = params().get(name)
    if not isinstance(value, dict):
        raise UserError(f"params.yaml has no `{name}` section: restore it from the template.")
    return value


@dataclass(frozen=True)
class BentoSpec:
    """The model as the image build sees it: params.yaml `bento` and `serve.service` (docs/adapting.md).

    The one place a model plugs in: the Bento, the image and the gate take the service, its sources,
    the Dockerfile, the framework label and the description from here, and the model file from the
    manifest (`manifest_file`) the pipeline writes. `root` is the project (the checkout, or a test's copy).
    """

    root: Path
    name: str  # serve.service: the BentoML service's and the Bento's name
    service: str  # module:attribute of the service class
    sources: tuple[str, ...]  # glob patterns relative to root
    dockerfile: Path
    framework: str
    description: str

    @property
    def manifest_file(self) -> Path:
        """The pipeline's manifest: name, version, sha256 and model_file of the served model."""
        return self.root / artifacts.MANIFEST_JSON

    @property
    def serve_lock(self) -> Path:
        """The serving dependencies the Bento records (the image installs them from the wheelhouse)."""
        return self.root / SERVE_LOCK_NAME

    def model_file(self, manifest: dict[str, Any]) -> Path:
        """The file the service loads: the manifest's `model_file`, beside the manifest."""
        return self.manifest_file.parent / manifest["model_file"]

    def source_files(self) -> list[Path]:
        """The service's files that go into the Bento (with params.yaml), sorted."""
        files = {p for pattern in (*self.sources, "params.yaml") for p in self.root.glob(pattern) if p.is_file()}
        return sorted(files)


BENTO_KEYS = ("service", "sources", "dockerfile", "framework", "description")


def bento_spec(root: Path = ROOT) -> BentoSpec:
    """params.yaml `bento` of the project at `root`, checked: every key, the files it names, the service module."""
    params_file = root / "params.yaml"
    if not params_file.is_file():
        raise UserError(f"{params_file} is missing: run from a checkout of this repository.")
    params = yaml.safe_load(params_file.read_text()) or {}
    bento, serve = params.get("bento"), params.get("serve")
    fix = "see docs/adapting.md"
    if not isinstance(bento, dict):
        raise UserError(f"{params_file} has no `bento` section: add one ({fix}).")
    if missing := [key for key in BENTO_KEYS if not bento.get(key)]:
        raise UserError(f"{params_file} `bento` lacks {', '.join(missing)}: add them ({fix}).")
    if not isinstance(serve, dict) or not serve.get("service"):
        raise UserError(f"{params_file} has no `serve.service` (the Bento's name): add it ({fix}).")
    module, _, attribute = str(bento["service"]).partition(":")
    if not module or not attribute:
        raise UserError(f"`bento.service` is {bento['service']!r}: write it as module:Class ({fix}).")
    if not (root / (module.replace(".", "/") + ".py")).is_file():
        raise UserError(f"`bento.service` names the module {module}, which is not a file under {root}: {fix}.")
    sources = bento["sources"]
    if not isinstance(sources, list) or not all(isinstance(s, str) and s for s in sources):
        raise UserError(f"`bento.sources` must be a list of paths or glob patterns ({fix}).")
    if empty := [pattern for pattern in sources if not any(p.is_file() for p in root.glob(pattern))]:
        raise UserError(f"`bento.sources` {', '.join(empty)} match no file under {root}: fix the patterns ({fix}).")
    dockerfile = root / bento["dockerfile"]
    if not dockerfile.is_file():
        raise UserError(f"`bento.dockerfile` {bento['dockerfile']} is not a file under {root} ({fix}).")
    return BentoSpec(
        root=root,
        name=str(serve["service"]),
        service=str(bento["service"]),
        sources=tuple(sources),
        dockerfile=dockerfile,
        framework=str(bento["framework"]),
        description=" ".join(str(bento["description"]).split()),
    )


# The project's images in the engine: the final one (`<repository>:<tag>`), docker build's raw output
# before normalizing (`<repository>-build:<variant>`), and the base built from Debian packages,
# named after the first BASE_TAG_HEX hex digits of its rootfs tarball's sha256
# (`<repository>-base:<sha>`). Every script names and recognizes them through these.
BASE_TAG_HEX = 16


def build_repository(repository: str) -> str:
    """Where `docker build` puts its raw output, before ci/image/oci.py normalizes it."""
    return f"{repository}-build"


def base_repository(repository: str) -> str:
    """Where ci/image/base.py imports the base it builds."""
    return f"{repository}-base"


def base_ref(repository: str, tarball_sha256: str) -> str:
    """The base image's reference for a rootfs tarball of this sha256."""
    return f"{base_repository(repository)}:{tarball_sha256[:BASE_TAG_HEX]}"


def is_base_ref(ref: str, repository: str) -> bool:
    """True when `ref` names a base ci/image/base.py built (the one unpinned FROM policies accept)."""
    return re.fullmatch(rf"{re.escape(base_repository(repository))}:[0-9a-f]{{{BASE_TAG_HEX},64}}", ref) is not None


MANIFEST_KEYS = ("name", "version", "sha256", "model_file")  # what the image build reads (docs/adapting.md)


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    """The model manifest the pipeline wrote (default: the checkout's), with the keys the build reads."""
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    if not path.is_file():
        raise UserError(f"{shown} is missing: run `dvc repro` (or `nox -s repro`) first.")
    manifest = json.loads(path.read_text())
    if missing := [key for key in MANIFEST_KEYS if not manifest.get(key)]:
        raise UserError(
            f"{shown} lacks {', '.join(missing)}: the pipeline's last stage writes them (docs/adapting.md)."
        )
    return manifest


def git(*args: str, default: str = "") -> str:
    """Output of a git command in the repository, or `default` outside a git checkout."""
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return default
    return out.stdout.strip()


# Fields before the path in each `git status --porcelain=v2` line, by its first character: changed
# (1), renamed or copied (2, the path is followed by a tab and the old path), unmerged (u), untracked (?).
_STATUS_FIELDS = {"1": 8, "2": 9, "u": 10, "?": 1}


def uncommitted_paths() -> list[str]:
    """Paths that make the checkout differ from HEAD: changed tracked files and untracked, not ignored ones.

    Untracked files count: a new `bentos/classifier/*.py` goes into the Bento (and the image) without
    ever being committed. Ignored files (build/, .cache/, DVC outputs) do not: they are outputs, not sources.
    """
    out = git("status", "--porcelain=v2", "--untracked-files=all", default="")
    paths = []
    for line in out.splitlines():
        if fields := _STATUS_FIELDS.get(line[:1]):
            paths.append(line.split(" ", fields)[-1].split("\t", 1)[0])
    return paths


def locked_mode(flag: bool = False) -> bool:
    """True when no lock may be refreshed (base-packages.lock, dvc.lock): CI, BASE_LOCKED=1 or `flag` (--locked).

    Like `uv sync --locked`: CI and `reproduce` (which sets BASE_LOCKED) fail on a stale lock; a
    person at a terminal gets it refreshed and is told to commit it.
    """
    env = {name: os.environ.get(name, "").lower() for name in ("CI", "BASE_LOCKED")}
    return flag or any(value not in ("", "0", "false", "no") for value in env.values())


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH if set, else the time of the last commit (0 outside git): never 'now'."""
    if value := os.environ.get("SOURCE_DATE_EPOCH"):
        return int(value)
    return int(git("log", "-1", "--format=%ct", default="0") or 0)


def tree_digest(root: Path) -> str:
    """A content hash of a directory: relative paths, file modes' executable bit and bytes, sorted."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{os.access(path, os.X_OK):d}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def say(message: str) -> None:
    """Progress line on stderr, flushed, so it interleaves correctly with tool output."""
    print(f"==> {message}", file=sys.stderr, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """Announce a long step and report how long it took."""
    say(f"{title} ...")
    start = time.monotonic()
    yield
    say(f"{title}: done in {time.monotonic() - start:.1f} s")


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command, streaming its output; a failure becomes a UserError naming the command."""
    merged = {**os.environ, **(env or {})}
    try:
        return subprocess.run(list(cmd), env=merged, check=True, **kwargs)
    except FileNotFoundError as exc:
        raise UserError(f"`{cmd[0]}` is not installed: {exc.strerror}.") from exc
    except subprocess.CalledProcessError as exc:
        raise UserError(
            f"`{' '.join(cmd[:3])} ...` failed with exit code {exc.returncode}; see its output above."
        ) from exc


def main_guard(func: Any) -> None:
    """Run a script's main(), turning UserError into one line on stderr and exit code 1."""
    try:
        func()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
