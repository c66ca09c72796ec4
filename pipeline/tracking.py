"""Experiment tracking in MLflow, beside DVC: off unless `MLFLOW_TRACKING_URI` is set.

DVC stays the source of truth. Every stage writes its outputs first; what MLflow receives are those
outputs read back from disk (the same bytes, the same numbers), so a run can be compared with
`dvc.lock` but never stands in for it. With tracking on, one `dvc repro` that runs `train` makes one run:

- train: creates the run, tagged with the git commit (`mlflow.source.git.commit`, MLflow's own key),
  `git.dirty` and `dvc.lock.sha256` (the lock as the run started); logs the params `data`, `train`
  and `baseline`, then the training history (`loss`, `val_loss`, ... one step per epoch) and
  `reports/training_history.csv`.
- evaluate: logs the params `evaluate`, the test metrics under the names `dvc metrics show` uses
  (`classifier.accuracy`, ..., `n_test`: equal to reports/metrics.json), metrics.json and the plots.
- package: writes the run ID into the model card, then logs `model.name`, the card, the manifest,
  and `models/model.onnx` as an MLflow model (ONNX flavor, with its input and output signature)
  whose `model.onnx` is byte for byte the DVC output: its sha256 is the manifest's.

Stages are separate processes. train records its run in `build/tracking/run.json` (git-ignored,
neither a dependency nor an output of any stage), with the sha256 of the model.keras it wrote; a
later stage logs to that run only when the model it reads is that one and the tracking URI is the
same. The run is never looked up on the server by content: training is byte-reproducible, so
another clone, or CI, may well have logged a run of the very same model.

Only train talks to the server before its work (to create the run: a server that is down fails the
stage within seconds, before any training); every stage writes its DVC outputs before it logs, so a
server that fails later never costs an output. A failure ends the stage with one sentence, or, with
`tracking.best_effort: true` in params.yaml, prints one warning line and the stage goes on untracked.
MLflow's HTTP client retries for minutes by default; CLIENT_ENV makes that seconds (your values win).

With `MLFLOW_TRACKING_URI` unset or empty, nothing here imports MLflow or writes a file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline import artifacts
from pipeline.params import ParamsError, section

if TYPE_CHECKING:
    import onnx
    from mlflow.models import ModelSignature

URI_ENV = "MLFLOW_TRACKING_URI"
SECTION = "tracking"
KEYS = ("experiment", "best_effort")
# Which run this checkout's later stages log to; under build/ (git-ignored), never seen by DVC.
STATE_FILE = Path("build/tracking/run.json")
# MLflow's client retries a failed request 7 times with exponential backoff (minutes) and waits up
# to 120 s for each answer. Three tries about a second apart, 10 s each: a server that is down
# fails the stage in ~2 s, one that hangs in ~30 s. Set in the environment before the first request
# (MLflow reads them per request); values already set win. MLflow 3 also sends usage telemetry.
CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
MODEL_NAME = "model"  # the logged model's name in the run
# The params.yaml sections each stage logs: those it reads (train logs `data` too: it made the split).
TRAIN_SECTIONS = ("data", "train", "baseline")
EVALUATE_SECTIONS = ("evaluate",)
PACKAGE_SECTIONS = ("model",)
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own key: its UI shows the commit
MAX_REASON = 200  # characters of a server's error kept in the one-line message
MAX_PARAMS, MAX_METRICS = 100, 1000  # per log_batch request: MLflow's limits

T = TypeVar("T")


class TrackingError(Exception):
    """Logging to MLflow failed and best effort was not asked for; the message is one sentence."""


@dataclass(frozen=True)
class Settings:
    """Where and how to track: the URI from the environment, the rest from params.yaml `tracking`."""

    uri: str
    experiment: str
    best_effort: bool


@dataclass(frozen=True)
class RunState:
    """What train leaves for the later stages in STATE_FILE: its run and the model it trained."""

    uri: str  # redacted: the file holds no password
    experiment_id: str
    run_id: str
    keras_sha256: str


def read_settings(params: dict[str, Any], environ: Mapping[str, str] = os.environ) -> Settings | None:
    """The tracking settings, or None when `MLFLOW_TRACKING_URI` is unset or empty (tracking off).

    Raises ParamsError when tracking is on and params.yaml's `tracking` section is missing or wrong.
    """
    uri = environ.get(URI_ENV, "").strip()
    if not uri:
        return None
    values = section(params, SECTION, KEYS)
    experiment, best_effort = values["experiment"], values["best_effort"]
    if not isinstance(experiment, str) or not experiment.strip():
        raise ParamsError(
            f"params.yaml `tracking.experiment` is {experiment!r}; set it to an MLflow experiment name, "
            "e.g. breast_cancer_classifier."
        )
    if not isinstance(best_effort, bool):
        raise ParamsError(f"params.yaml `tracking.best_effort` is {best_effort!r}; set it to true or false.")
    return Settings(uri=uri, experiment=experiment, best_effort=best_effort)


def redact(text: str) -> str:
    """`text` with the user and password of every URL in it removed (`https://u:p@host` -> `https://host`)."""
    return re.sub(r"(?<=://)[^/@\s'\"]+@", "", text)


def failure_reason(exc: BaseException) -> str:
    """A short, password-free reason for a failed MLflow call, for the one-line message.

    MLflow's messages embed the whole request (URL, retries, the urllib3 chain); the cause is the
    part a person needs: refused, unknown host, an HTTP status, a timeout.
    """
    text = redact(str(exc))
    if match := re.search(r"too many (\d{3}) error responses", text):
        return f"it answered HTTP {match.group(1)} to every try"
    if match := re.search(r"error code (\d{3}) != 200", text):
        return f"it answered HTTP {match.group(1)}"
    if re.search(r"timed out", text, re.IGNORECASE):
        return "it did not answer in time"
    if match := re.search(r"\[Errno -?\d+\] ([^'\")]+)", text):
        return f"no connection: {match.group(1).strip().lower()}"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= MAX_REASON else first[: MAX_REASON - 3] + "..."


def failure_message(settings: Settings, what: str, reason: str) -> str:
    """The one sentence a stage ends with when logging fails and best effort is off.

    `--force`: without it, DVC restores a stage that ran before with the same inputs from its run
    cache instead of running it, and nothing would be logged.
    """
    return (
        f"MLflow tracking at {redact(settings.uri)} failed while {what} ({reason}): start the server or correct "
        f"{URI_ENV} and run `dvc repro --force`, set `tracking.best_effort: true` in params.yaml to go on "
        f"without it, or unset {URI_ENV} to turn tracking off."
    )


def warning_line(settings: Settings, what: str, reason: str) -> str:
    """The one line a stage prints when logging fails in best-effort mode, and then goes on."""
    return (
        f"warning: MLflow tracking at {redact(settings.uri)} failed while {what} ({reason}); going on "
        "without it (params.yaml `tracking.best_effort` is true): the DVC outputs are complete, the run is not."
    )


def param_value(value: Any) -> str:
    """A params.yaml value as an MLflow param: strings as they are, anything else as JSON (`[32, 16]`)."""
    return value if isinstance(value, str) else json.dumps(value)


def flat_params(params: dict[str, Any], sections: tuple[str, ...]) -> dict[str, str]:
    """The params of `sections` as MLflow params, keyed as dvc.yaml names them (`train.epochs`)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        else:
            flat[prefix] = param_value(value)

    for name in sections:
        walk(name, section(params, name, ()))
    return flat


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number in metrics.json, keyed as `dvc metrics show` names it (`classifier.accuracy`, `n_test`)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_metrics(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def history_metrics(history_csv: str) -> list[tuple[str, float, int]]:
    """training_history.csv as (metric, value, step) rows: one step per epoch, the CSV's values."""
    rows = list(csv.DictReader(io.StringIO(history_csv)))
    return [
        (column, float(value), int(row["epoch"])) for row in rows for column, value in row.items() if column != "epoch"
    ]


def sha256_file(path: Path) -> str:
    """The sha256 of a file, or '' when it does not exist."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def git_state(root: Path) -> tuple[str, bool]:
    """(HEAD's commit, whether tracked files differ from it) at `root`; ('unknown', True) outside git.

    `--no-optional-locks`: DVC may be using the repository at the same moment.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return commit, bool(status.strip())


def start_tags(root: Path) -> dict[str, str]:
    """The tags a run starts with: the git commit, whether the tree was dirty, the sha256 of dvc.lock."""
    commit, dirty = git_state(root)
    return {
        GIT_COMMIT_TAG: commit,
        "git.dirty": json.dumps(dirty),
        "dvc.lock.sha256": sha256_file(root / "dvc.lock") or "none",
    }


def run_name(tags: dict[str, str]) -> str:
    """A readable run name: the short commit, `+dirty` when the tree differed from it."""
    return tags[GIT_COMMIT_TAG][:12] + ("+dirty" if tags["git.dirty"] == "true" else "")


def write_state(root: Path, state: RunState) -> Path:
    """Record the run that trained the model, for the later stages of this checkout."""
    return artifacts.write_json(root / STATE_FILE, asdict(state))


def read_state(root: Path) -> RunState | None:
    """The run train recorded, or None when there is none (or it cannot be read)."""
    try:
        return RunState(**artifacts.read_json(root / STATE_FILE))
    except (OSError, ValueError, TypeError):
        return None


def onnx_signature(model: onnx.ModelProto) -> ModelSignature:
    """The MLflow signature of an ONNX graph: one tensor spec per input and output, free dims as -1."""
    import onnx

    mlflow = import_mlflow()

    def specs(values: Any) -> Any:
        return mlflow.types.Schema(
            [
                mlflow.types.TensorSpec(
                    onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type),
                    tuple(
                        dim.dim_value if dim.HasField("dim_value") else -1 for dim in value.type.tensor_type.shape.dim
                    ),
                    value.name,
                )
                for value in values
            ]
        )

    return mlflow.models.ModelSignature(inputs=specs(model.graph.input), outputs=specs(model.graph.output))


def use_short_timeouts(environ: MutableMapping[str, str] = os.environ) -> None:
    """Put CLIENT_ENV into `environ`, keeping any value already set there."""
    for name, value in CLIENT_ENV.items():
        environ.setdefault(name, value)


def import_mlflow() -> ModuleType:
    """Import MLflow (and the submodules used here) with the client's short timeouts in place."""
    use_short_timeouts()
    with warnings.catch_warnings():
        # MLflow's import warns about type hints of its own GenAI classes: nothing to act on here.
        warnings.simplefilter("ignore")
        import mlflow
        import mlflow.models
        import mlflow.onnx
        import mlflow.pyfunc
        import mlflow.types
    return mlflow


class Run:
    """One MLflow run as one stage logs to it; `Run()` is inactive and every method a no-op.

    Every call to MLflow goes through `_attempt`: a failure raises TrackingError (one sentence), or
    in best-effort mode prints one warning line and makes the run inactive for the rest of the stage.
    Used as a context manager, it marks the run FAILED when the stage itself fails (a quality gate,
    a crash), without hiding that error.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        client: Any = None,
        run_id: str | None = None,
        experiment_id: str | None = None,
        root: Path = Path("."),
    ) -> None:
        self.settings = settings
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.root = root

    @property
    def active(self) -> bool:
        """Whether this stage logs to a run."""
        return self.run_id is not None

    def _attempt(self, what: str, action: Callable[[], T]) -> T | None:
        """Run one MLflow call; on a server or network failure, fail in one sentence or warn and go on."""
        from mlflow.exceptions import MlflowException

        try:
            return action()
        except (MlflowException, OSError) as exc:  # requests' errors are OSErrors
            reason = failure_reason(exc)
            if not self.settings.best_effort:
                raise TrackingError(failure_message(self.settings, what, reason)) from exc
            print(warning_line(self.settings, what, reason), file=sys.stderr)
            self.run_id = None
            return None

    def _log_batch(
        self, what: str, params: dict[str, str] | None = None, metrics: list[tuple[str, float, int]] | None = None
    ) -> None:
        """Log params and (key, value, step) metrics, in as few requests as MLflow's batch limits allow."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        params_list = [Param(key, value) for key, value in (params or {}).items()]
        metrics_list = [Metric(key, value, now, step) for key, value, step in metrics or []]
        batches = [
            {"params": params_list[i : i + MAX_PARAMS], "metrics": []} for i in range(0, len(params_list), MAX_PARAMS)
        ]
        batches += [
            {"params": [], "metrics": metrics_list[i : i + MAX_METRICS]}
            for i in range(0, len(metrics_list), MAX_METRICS)
        ]
        for batch in batches:
            if self.active:
                self._attempt(what, lambda b=batch: self.client.log_batch(self.run_id, **b))

    def _log_files(self, what: str, paths: list[Path]) -> None:
        """Upload DVC outputs as artifacts at their repository paths (`reports/metrics.json`)."""
        for path in paths:
            if not self.active:
                return
            target = str(path.parent)
            if (self.root / path).is_dir():
                self._attempt(what, lambda p=path: self.client.log_artifacts(self.run_id, str(self.root / p), str(p)))
            else:
                self._attempt(
                    what, lambda p=path, t=target: self.client.log_artifact(self.run_id, str(self.root / p), t)
                )

    def _set_tags(self, what: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            if self.active:
                self._attempt(what, lambda k=key, v=value: self.client.set_tag(self.run_id, k, v))

    def finish(self) -> None:
        """Mark the run FINISHED (each stage does: the run's end time is its last stage's)."""
        if self.active:
            self._attempt("finishing the run", lambda: self.client.set_terminated(self.run_id, "FINISHED"))

    def log_training(self) -> None:
        """After train wrote its outputs: record the run for the later stages, log the history."""
        if not self.active:
            return
        keras_sha256 = sha256_file(self.root / artifacts.MODEL_FILE)
        write_state(self.root, RunState(redact(self.settings.uri), self.experiment_id, self.run_id, keras_sha256))
        history = history_metrics((self.root / artifacts.HISTORY_CSV).read_text(encoding="utf-8"))
        what = "logging the training history"
        self._set_tags(what, {"model.keras_sha256": keras_sha256})
        self._log_batch(what, metrics=history)
        self._log_files(what, [artifacts.HISTORY_CSV])
        self.finish()
        if self.active:
            epochs = len({step for _, _, step in history})
            print(f"tracking: run {self.run_id}: {epochs} epochs of training history, {artifacts.HISTORY_CSV}")

    def log_evaluation(self, params: dict[str, Any]) -> None:
        """After evaluate wrote its outputs: log its params, the test metrics, metrics.json and the plots."""
        if not self.active:
            return
        metrics = flat_metrics(artifacts.read_json(self.root / artifacts.METRICS_JSON))
        what = "logging the test metrics and plots"
        self._log_batch(
            what,
            params=flat_params(params, EVALUATE_SECTIONS),
            metrics=[(key, value, 0) for key, value in metrics.items()],
        )
        self._log_files(what, [artifacts.METRICS_JSON, artifacts.PLOTS_DIR])
        self.finish()
        if self.active:
            print(
                f"tracking: run {self.run_id}: {len(metrics)} test metrics, "
                f"{artifacts.METRICS_JSON}, {artifacts.PLOTS_DIR}/"
            )

    def log_package(self, params: dict[str, Any]) -> None:
        """After package wrote its outputs: log `model`, the card, the manifest, and the ONNX model."""
        if not self.active:
            return
        manifest = artifacts.read_json(self.root / artifacts.MANIFEST_JSON)
        what = "logging the model and its card"
        self._log_batch(what, params=flat_params(params, PACKAGE_SECTIONS))
        self._set_tags(what, {"model.sha256": manifest["sha256"], "model.version": manifest["version"]})
        self._log_files(what, [artifacts.MODEL_CARD_MD, artifacts.MANIFEST_JSON])
        model_uri = self._attempt(what, lambda: self._log_onnx_model(manifest["sha256"])) if self.active else None
        self.finish()
        if self.active:
            print(
                f"tracking: run {self.run_id}: {artifacts.ONNX_FILE} as MLflow model {model_uri} "
                f"(sha256 {manifest['sha256'][:16]}...), {artifacts.MODEL_CARD_MD}, {artifacts.MANIFEST_JSON}"
            )

    def _log_onnx_model(self, sha256: str) -> str:
        """Log models/model.onnx as an MLflow model of this run's experiment; return its `models:/` URI.

        The ONNX flavor writes the graph with `onnx.save_model`, which serializes the parsed file
        again: for this graph (no external data, nothing to re-encode) the bytes come out the same,
        which the tracking tests check by downloading the artifact. Requirements are given, not
        inferred: inference would load the model in a subprocess to watch what it imports.
        """
        import onnx

        mlflow = import_mlflow()
        data = (self.root / artifacts.ONNX_FILE).read_bytes()
        proto = onnx.load_from_string(data)
        logged = self.client.create_logged_model(
            self.experiment_id, name=MODEL_NAME, source_run_id=self.run_id, tags={"sha256": sha256}
        )
        info = mlflow.models.Model.log(
            artifact_path=None,
            flavor=mlflow.onnx,
            name=MODEL_NAME,
            run_id=self.run_id,
            model_id=logged.model_id,
            onnx_model=proto,
            signature=onnx_signature(proto),
            save_as_external_data=False,  # one file, as in DVC (ONNX would split tensors over 1 KB out)
            pip_requirements=mlflow.onnx.get_default_pip_requirements(),
            metadata={"sha256": sha256, "dvc_output": str(artifacts.ONNX_FILE)},
        )
        return info.model_uri

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc is None or not self.active or isinstance(exc, TrackingError):
            return
        from mlflow.exceptions import MlflowException

        try:  # the stage's own error is what matters: a server that cannot take this note stays quiet
            self.client.set_tag(self.run_id, "failure", redact(str(exc))[:5000])
            self.client.set_terminated(self.run_id, "FAILED")
        except (MlflowException, OSError):
            pass


def connect(settings: Settings) -> Any:
    """An MlflowClient for `settings.uri` (no request is made yet)."""
    return import_mlflow().MlflowClient(tracking_uri=settings.uri)


def start_run(params: dict[str, Any], root: Path = Path("."), environ: Mapping[str, str] = os.environ) -> Run:
    """train, before training: create the run (and the experiment on first use), log train's params.

    Inactive when tracking is off. A server that is down fails here, before any work, in one sentence
    (or, best effort, one warning line and an inactive run). Then any run an earlier train recorded
    is forgotten: the model this train writes is the one later stages will read.
    """
    settings = read_settings(params, environ)
    if settings is None:
        return Run()
    client = connect(settings)
    run = Run(settings, client, root=root)
    tags = start_tags(root)

    def create() -> tuple[str, str]:
        experiment = client.get_experiment_by_name(settings.experiment)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(settings.experiment)
        created = client.create_run(experiment_id, run_name=run_name(tags), tags=tags)
        return experiment_id, created.info.run_id

    ids = run._attempt(f"creating a run in experiment {settings.experiment!r}", create)
    (root / STATE_FILE).unlink(missing_ok=True)
    if ids is None:
        return Run()
    run.experiment_id, run.run_id = ids
    run._log_batch("logging the params", params=flat_params(params, TRAIN_SECTIONS))
    if run.active:
        print(
            f"tracking: run {run.run_id} ({run_name(tags)}) in experiment {settings.experiment!r} "
            f"at {redact(settings.uri)}"
        )
    return run


def resume_run(params: dict[str, Any], root: Path = Path("."), environ: Mapping[str, str] = os.environ) -> Run:
    """evaluate and package: the run train recorded, if it trained the model.keras this stage reads.

    Inactive when tracking is off. No request is made here. When this checkout has no run of this
    model (the model came from the DVC cache or remote, or was trained untracked or against another
    server) the stage says so in one line and logs nothing.
    """
    settings = read_settings(params, environ)
    if settings is None:
        return Run()
    state = read_state(root)
    keras_sha256 = sha256_file(root / artifacts.MODEL_FILE)
    if state is None or state.uri != redact(settings.uri) or state.keras_sha256 != keras_sha256:
        print(
            f"warning: no MLflow run at {redact(settings.uri)} trained this {artifacts.MODEL_FILE} here (it came "
            "from the DVC cache or remote, or was trained untracked): this stage logs nothing; run "
            "`dvc repro --force` to track a run.",
            file=sys.stderr,
        )
        return Run()
    return Run(settings, connect(settings), state.run_id, state.experiment_id, root)
