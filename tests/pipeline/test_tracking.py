"""MLflow tracking (pipeline/tracking.py) without a server: settings, what is logged, failures, state.

MLflow's client is replaced by a recording fake where a call's effect is not the point; the real
server round trip is the `tracking` tier (tests/tracking/, `nox -s tracking`).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from pipeline import artifacts, tracking
from pipeline.package import build_manifest, render_model_card
from pipeline.params import ParamsError, load_params
from pipeline.tracking import Run, RunState, Settings, TrackingError

REPO_ROOT = Path(__file__).resolve().parents[2]
URI = "http://127.0.0.1:5999"
# What MLflow 3.17's client raised against a closed port and a server answering 503 (measured).
REFUSED = (
    "API request to http://user:secret@127.0.0.1:1/api/2.0/mlflow/experiments/get-by-name failed with exception "
    "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: /api/2.0/mlflow/experiments/"
    "get-by-name?experiment_name=x (Caused by NewConnectionError(\"HTTPConnection(host='127.0.0.1', port=1): "
    'Failed to establish a new connection: [Errno 111] Connection refused"))'
)
ANSWERS_503 = (
    "API request to http://127.0.0.1:39205/api/2.0/mlflow/experiments/get-by-name failed with exception "
    "HTTPConnectionPool(host='127.0.0.1', port=39205): Max retries exceeded with url: /api/2.0/mlflow/"
    "experiments/get-by-name?experiment_name=x (Caused by ResponseError('too many 503 error responses'))"
)


@pytest.fixture(name="params")
def fixture_params() -> dict[str, Any]:
    """The repository's params.yaml (a fresh copy per test)."""
    return copy.deepcopy(load_params(REPO_ROOT / "params.yaml"))


class FakeClient:
    """Records MlflowClient calls; once `succeed` calls have passed, every call raises `error`."""

    def __init__(self, error: Exception | None = None, succeed: int = 0, experiment: Any = None) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.error, self.succeed, self.experiment = error, succeed, experiment

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            if self.error is not None and len(self.calls) > self.succeed:
                raise self.error
            return {
                "get_experiment_by_name": self.experiment,
                "create_experiment": "7",
                "create_run": SimpleNamespace(info=SimpleNamespace(run_id="r1")),
            }.get(name)

        return call

    def names(self) -> list[str]:
        """The methods called, in order."""
        return [name for name, _, _ in self.calls]


def mlflow_error(message: str) -> Exception:
    """An MlflowException, as MLflow's REST client raises it."""
    from mlflow.exceptions import MlflowException

    return MlflowException(message)


def one_sentence(message: str) -> bool:
    """One line ending in a full stop, with no other sentence end inside (URLs' dots are not)."""
    return "\n" not in message and len(re.findall(r"[.!?](?:\s|$)", message)) == 1 and message.endswith(".")


def settings(best_effort: bool = False) -> Settings:
    """Tracking on, against URI."""
    return Settings(uri=URI, experiment="exp", best_effort=best_effort)


@pytest.mark.parametrize("environ", [{}, {"MLFLOW_TRACKING_URI": ""}, {"MLFLOW_TRACKING_URI": "  "}])
def test_tracking_is_off_without_a_tracking_uri(params, environ):
    """No (or an empty) MLFLOW_TRACKING_URI: no settings, even with params.yaml's section removed."""
    del params["tracking"]
    assert tracking.read_settings(params, environ) is None


def test_settings_come_from_the_environment_and_params_yaml(params):
    """The URI from the environment; the experiment and best effort from params.yaml `tracking`."""
    params["tracking"]["best_effort"] = True
    got = tracking.read_settings(params, {"MLFLOW_TRACKING_URI": URI})
    assert got == Settings(uri=URI, experiment=params["tracking"]["experiment"], best_effort=True)
    assert (
        tracking.read_settings(load_params(REPO_ROOT / "params.yaml"), {"MLFLOW_TRACKING_URI": URI}).best_effort
        is False
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.pop("tracking"), "params.yaml has no `tracking` section"),
        (lambda p: p["tracking"].pop("best_effort"), "params.yaml lacks `tracking.best_effort`"),
        (
            lambda p: p["tracking"].update(best_effort="yes"),
            "`tracking.best_effort` is 'yes'; set it to true or false.",
        ),
        (lambda p: p["tracking"].update(experiment=""), "`tracking.experiment` is ''"),
    ],
    ids=["no-section", "no-key", "not-a-bool", "empty-experiment"],
)
def test_bad_tracking_settings_say_what_to_fix(params, change, message):
    """With tracking on, a missing or wrong `tracking` key fails in one sentence naming it."""
    change(params)
    with pytest.raises(ParamsError, match=re.escape(message)):
        tracking.read_settings(params, {"MLFLOW_TRACKING_URI": URI})


@pytest.mark.parametrize("uri_env", ["unset", "empty"])
def test_tracking_off_imports_no_mlflow_and_writes_nothing(tmp_path, uri_env):
    """Tracking off: the stages' modules and every tracking call import no MLflow and leave the
    directory they run in empty (no mlruns/, no build/). A fresh interpreter, as under `dvc repro`."""
    code = (
        "import json, sys\n"
        "from pipeline import tracking, train, evaluate, package\n"
        "from pipeline.params import load_params\n"
        "params = load_params(sys.argv[1])\n"
        "runs = [tracking.start_run(params), tracking.resume_run(params)]\n"
        "for run in runs:\n"
        "    with run:\n"
        "        run.log_training(); run.log_evaluation(params); run.log_package(params); run.finish()\n"
        "print(json.dumps({'active': [r.active for r in runs], 'ids': [r.run_id for r in runs],\n"
        "                  'mlflow': sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    if uri_env == "empty":
        env["MLFLOW_TRACKING_URI"] = ""
    env["PYTHONPATH"] = str(REPO_ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO_ROOT / "params.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == {"active": [False, False], "ids": [None, None], "mlflow": []}
    assert out.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_short_timeouts_keep_values_already_set():
    """MLflow's minutes of retries become seconds, unless the user set their own values."""
    environ = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
    tracking.use_short_timeouts(environ)
    assert environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"
    assert environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert environ["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_redact_removes_user_and_password():
    """A URL's credentials never reach a message, a tag or the state file."""
    assert tracking.redact("see https://me:s3cret@mlflow.example.com/x and http://t@h:1") == (
        "see https://mlflow.example.com/x and http://h:1"
    )
    assert tracking.redact(URI) == URI


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (REFUSED, "no connection: connection refused"),
        (ANSWERS_503, "it answered HTTP 503 to every try"),
        (
            "API request to endpoint /api/2.0/x failed with error code 404 != 200. Response body: ''",
            "it answered HTTP 404",
        ),
        ("HTTPConnectionPool(host='h', port=1): Read timed out. (read timeout=10)", "it did not answer in time"),
        ("INVALID_PARAMETER_VALUE: bad\nsecond line", "INVALID_PARAMETER_VALUE: bad"),
    ],
    ids=["refused", "503", "404", "timeout", "other"],
)
def test_failure_reason_is_short_and_password_free(text, reason):
    """MLflow's long messages shrink to the cause a person needs; credentials are dropped."""
    got = tracking.failure_reason(Exception(text))
    assert got == reason
    assert "secret" not in got


def test_failure_message_is_one_sentence_that_says_what_to_do():
    """The strict failure names the server (without credentials), what failed, why, and three ways on."""
    message = tracking.failure_message(
        Settings("http://u:secret@127.0.0.1:1", "exp", False), "creating a run", "no connection"
    )
    assert one_sentence(message), message
    assert "secret" not in message
    for needle in (
        "http://127.0.0.1:1",
        "creating a run",
        "`dvc repro --force`",
        "`tracking.best_effort: true`",
        "unset",
    ):
        assert needle in message


def test_params_are_logged_as_dvc_yaml_names_them(params):
    """Every params.yaml key the tracked stages declare in dvc.yaml is logged under that name;
    strings as they are, other values as JSON."""
    logged = tracking.flat_params(
        params, tracking.TRAIN_SECTIONS + tracking.EVALUATE_SECTIONS + tracking.PACKAGE_SECTIONS
    )
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    declared = [key for name in ("train", "evaluate", "package") for key in stages[name].get("params", [])]
    for key in declared:
        assert key in logged or any(name.startswith(f"{key}.") for name in logged), key
    assert logged["train.hidden_units"] == "[32, 16]"
    assert logged["train.learning_rate"] == "0.001"
    assert logged["data.dataset"] == "breast_cancer"
    assert logged["model.name"] == params["model"]["name"]


def test_tracked_stages_depend_on_the_module_but_not_on_its_settings():
    """train, evaluate and package re-run when pipeline/tracking.py changes; `tracking.*` is in no
    stage's params, since it never changes what a stage writes."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert [name for name, stage in stages.items() if "pipeline/tracking.py" in stage["deps"]] == [
        "train",
        "evaluate",
        "package",
    ]
    declared = [key for stage in stages.values() for key in stage.get("params", [])]
    assert not [key for key in declared if key == tracking.SECTION or key.startswith(f"{tracking.SECTION}.")]


def test_metrics_are_named_as_dvc_metrics_show_names_them():
    """Every number of metrics.json, dotted like `dvc metrics show`; nothing else."""
    metrics = {"classifier": {"accuracy": 0.96, "roc_auc": 0.99}, "baseline": {"accuracy": 0.98}, "n_test": 114}
    assert tracking.flat_metrics({**metrics, "note": "x", "flag": True}) == {
        "classifier.accuracy": 0.96,
        "classifier.roc_auc": 0.99,
        "baseline.accuracy": 0.98,
        "n_test": 114.0,
    }


def test_history_is_one_step_per_epoch():
    """training_history.csv becomes (metric, value, epoch) for each column but `epoch`."""
    csv_text = "epoch,loss,val_loss\n1,0.5,0.6\n2,0.25,0.375\n"
    assert tracking.history_metrics(csv_text) == [
        ("loss", 0.5, 1),
        ("val_loss", 0.6, 1),
        ("loss", 0.25, 2),
        ("val_loss", 0.375, 2),
    ]


def test_git_state_names_the_commit_and_a_dirty_tree(tmp_path):
    """The tags come from HEAD, and a changed tracked file marks the run dirty; outside git, 'unknown'."""
    assert tracking.git_state(tmp_path) == ("unknown", True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    subprocess.run([*git, "add", "dvc.lock"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert tracking.git_state(tmp_path) == (head, False)
    tags = tracking.start_tags(tmp_path)
    assert tags["dvc.lock.sha256"] == tracking.sha256_file(tmp_path / "dvc.lock")
    assert tracking.run_name(tags) == head[:12]
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    assert tracking.git_state(tmp_path) == (head, True)
    assert tracking.run_name(tracking.start_tags(tmp_path)) == f"{head[:12]}+dirty"


def test_state_round_trips_and_a_broken_file_is_no_state(tmp_path):
    """train's record of its run reads back; a missing or unreadable file means no run."""
    assert tracking.read_state(tmp_path) is None
    state = RunState(uri=URI, experiment_id="1", run_id="abc", keras_sha256="f" * 64)
    tracking.write_state(tmp_path, state)
    assert tracking.read_state(tmp_path) == state
    (tmp_path / tracking.STATE_FILE).write_text("{not json")
    assert tracking.read_state(tmp_path) is None


def trained_checkout(root: Path, uri: str = URI, model: bytes = b"model") -> None:
    """A checkout where train wrote `model` and recorded run `r1` at `uri`."""
    artifacts.write_bytes(root / artifacts.MODEL_FILE, model)
    keras = tracking.sha256_file(root / artifacts.MODEL_FILE)
    tracking.write_state(root, RunState(uri=tracking.redact(uri), experiment_id="1", run_id="r1", keras_sha256=keras))


def test_later_stage_resumes_the_run_that_trained_its_model(tmp_path, params):
    """evaluate and package log to train's run when the model they read is the one it trained."""
    trained_checkout(tmp_path)
    run = tracking.resume_run(params, tmp_path, {"MLFLOW_TRACKING_URI": URI})
    assert (run.active, run.run_id, run.experiment_id) == (True, "r1", "1")


@pytest.mark.parametrize("case", ["no-state", "other-model", "other-server"])
def test_later_stage_without_its_run_logs_nothing_and_says_so(tmp_path, params, capsys, case):
    """A model from the DVC cache, or trained untracked or against another server: one warning
    line, an inactive run, no request."""
    if case != "no-state":
        trained_checkout(tmp_path, uri="http://elsewhere:5000" if case == "other-server" else URI)
    if case == "other-model":
        artifacts.write_bytes(tmp_path / artifacts.MODEL_FILE, b"another model")
    run = tracking.resume_run(params, tmp_path, {"MLFLOW_TRACKING_URI": URI})
    assert not run.active
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("warning: no MLflow run at http://127.0.0.1:5999 trained this")
    assert "`dvc repro --force`" in err


def test_start_run_creates_the_experiment_and_the_run(tmp_path, params, monkeypatch):
    """train's run: the experiment created when missing, the run tagged and named, train's params logged."""
    client = FakeClient()
    monkeypatch.setattr(tracking, "connect", lambda settings: client)
    run = tracking.start_run(params, tmp_path, {"MLFLOW_TRACKING_URI": URI})
    assert (run.active, run.run_id, run.experiment_id) == (True, "r1", "7")
    assert client.names() == ["get_experiment_by_name", "create_experiment", "create_run", "log_batch"]
    _, (experiment_id,), create_kwargs = client.calls[2]
    assert experiment_id == "7"
    assert set(create_kwargs["tags"]) == {"mlflow.source.git.commit", "git.dirty", "dvc.lock.sha256"}
    logged = {p.key: p.value for p in client.calls[3][2]["params"]}
    assert logged == tracking.flat_params(params, tracking.TRAIN_SECTIONS)


def test_start_run_reuses_an_existing_experiment(tmp_path, params, monkeypatch):
    """An experiment of that name is used, not created again."""
    client = FakeClient(experiment=SimpleNamespace(experiment_id="3"))
    monkeypatch.setattr(tracking, "connect", lambda settings: client)
    assert tracking.start_run(params, tmp_path, {"MLFLOW_TRACKING_URI": URI}).experiment_id == "3"
    assert "create_experiment" not in client.names()


def test_down_server_fails_train_before_training_and_keeps_the_last_record(tmp_path, params, monkeypatch):
    """Strict: the first request fails the stage in one sentence; the earlier run record stays
    (nothing was trained)."""
    trained_checkout(tmp_path)
    monkeypatch.setattr(tracking, "connect", lambda settings: FakeClient(error=mlflow_error(REFUSED)))
    with pytest.raises(TrackingError) as failure:
        tracking.start_run(params, tmp_path, {"MLFLOW_TRACKING_URI": URI})
    message = str(failure.value)
    assert one_sentence(message), message
    assert "creating a run in experiment 'breast_cancer_classifier' (no connection: connection refused)" in message
    assert tracking.read_state(tmp_path) is not None


def test_best_effort_goes_on_untracked_with_one_warning_line(tmp_path, params, monkeypatch, capsys):
    """Best effort: one warning line, an inactive run (train goes on), and no stale run record."""
    trained_checkout(tmp_path)
    params["tracking"]["best_effort"] = True
    monkeypatch.setattr(tracking, "connect", lambda settings: FakeClient(error=mlflow_error(ANSWERS_503)))
    run = tracking.start_run(params, tmp_path, {"MLFLOW_TRACKING_URI": URI})
    assert not run.active
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("warning: MLflow tracking at http://127.0.0.1:5999 failed while creating a run")
    assert "(it answered HTTP 503 to every try)" in err
    assert tracking.read_state(tmp_path) is None


def evaluated_checkout(root: Path) -> None:
    """A checkout with evaluate's outputs (small, made up)."""
    metrics = {"classifier": {"accuracy": 0.9}, "baseline": {"accuracy": 0.95}, "n_test": 10}
    artifacts.write_json(root / artifacts.METRICS_JSON, metrics)
    artifacts.write_csv(root / artifacts.ROC_CSV, ["fpr", "tpr"], [[0, 1]])


def test_evaluation_logs_metrics_params_and_files(tmp_path, params):
    """evaluate's params and metrics in one batch, then metrics.json and the plots at their repository paths."""
    evaluated_checkout(tmp_path)
    client = FakeClient()
    Run(settings(), client, "r1", "1", tmp_path).log_evaluation(params)
    assert client.names() == ["log_batch", "log_batch", "log_artifact", "log_artifacts", "set_terminated"]
    params_batch, metrics_batch = client.calls[0][2], client.calls[1][2]
    assert {p.key for p in params_batch["params"]} == {"evaluate.min_accuracy", "evaluate.min_roc_auc"}
    assert {(m.key, m.value, m.step) for m in metrics_batch["metrics"]} == {
        ("classifier.accuracy", 0.9, 0),
        ("baseline.accuracy", 0.95, 0),
        ("n_test", 10.0, 0),
    }
    assert client.calls[2][1] == ("r1", str(tmp_path / artifacts.METRICS_JSON), "reports")
    assert client.calls[3][1] == ("r1", str(tmp_path / artifacts.PLOTS_DIR), "reports/plots")
    assert client.calls[4][1] == ("r1", "FINISHED")


def test_failure_after_the_outputs_fails_in_one_sentence(tmp_path, params):
    """Strict: a server failing mid-stage raises TrackingError; the stage's outputs are untouched."""
    evaluated_checkout(tmp_path)
    before = (tmp_path / artifacts.METRICS_JSON).read_bytes()
    client = FakeClient(error=mlflow_error(REFUSED), succeed=1)
    with pytest.raises(TrackingError, match=r"failed while logging the test metrics and plots \(no connection"):
        Run(settings(), client, "r1", "1", tmp_path).log_evaluation(params)
    assert (tmp_path / artifacts.METRICS_JSON).read_bytes() == before


def test_best_effort_failure_warns_once_and_stops_logging(tmp_path, params, capsys):
    """Best effort: the first failure prints one line; the stage's other calls are not even tried."""
    evaluated_checkout(tmp_path)
    client = FakeClient(error=OSError("[Errno 104] Connection reset by peer"), succeed=1)
    run = Run(settings(best_effort=True), client, "r1", "1", tmp_path)
    run.log_evaluation(params)
    run.finish()
    assert client.names() == ["log_batch", "log_batch"]
    assert not run.active
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "(no connection: connection reset by peer)" in err


def test_a_failing_stage_marks_its_run_failed_and_keeps_its_error(tmp_path):
    """The stage's own error (a quality gate, a crash) propagates; the run says FAILED and why."""
    client = FakeClient()
    with pytest.raises(ValueError, match="quality gate failed"), Run(settings(), client, "r1", "1", tmp_path):
        raise ValueError("quality gate failed: accuracy 0.5 is below its floor")
    assert client.names() == ["set_tag", "set_terminated"]
    assert client.calls[0][1] == ("r1", "failure", "quality gate failed: accuracy 0.5 is below its floor")
    assert client.calls[1][1] == ("r1", "FAILED")


def test_a_tracking_failure_is_not_reported_to_the_server_that_failed(tmp_path):
    """A TrackingError is the server failing: no further request is made to mark the run."""
    client = FakeClient()
    with pytest.raises(TrackingError), Run(settings(), client, "r1", "1", tmp_path):
        raise TrackingError("MLflow tracking at x failed.")
    assert client.calls == []


def test_onnx_signature_is_the_graphs_inputs_and_outputs():
    """The logged model's signature: one float32 tensor per graph input and output, the batch as -1."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.zeros((30, 2), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["probabilities"])],
        "g",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 30])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        [weights],
    )
    signature = tracking.onnx_signature(helper.make_model(graph)).to_dict()
    assert json.loads(signature["inputs"]) == [
        {"name": "features", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 30]}}
    ]
    assert json.loads(signature["outputs"]) == [
        {"name": "probabilities", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}
    ]


def test_model_card_names_the_run_only_when_tracked(params):
    """Untracked, the card says nothing of MLflow (`dvc repro` keeps its hash in dvc.lock);
    tracked, one paragraph more names the run."""
    schema = {"feature_names": [f"f{i}" for i in range(30)], "class_names": ["malignant", "benign"], "n_features": 30}
    scores = dict.fromkeys(artifacts.METRIC_NAMES, 0.9)
    metrics = {"classifier": scores, "baseline": scores, "n_test": 114}
    recorded = {name: params[name] for name in ("data", "train", "baseline")}
    manifest = build_manifest("m", b"model", schema, metrics, recorded)
    untracked, tracked = render_model_card(manifest), render_model_card(manifest, "0123abcd")
    assert "MLflow" not in untracked
    extra = [line for line in tracked.splitlines() if line not in untracked.splitlines()]
    assert extra == [
        "Tracked in MLflow: run `0123abcd` holds the params, the training history, the test metrics, the plots, "
        "this card, and `model.onnx` as an MLflow model with the same sha256."
    ]
    assert tracked.replace(extra[0] + "\n\n", "") == untracked
