"""The benchmark's pure parts: goal verdicts, medians of rounds, metrics, pinning, read-only mounts, layers."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from ci.bench import run as bench
from ci.bench.run import evaluate, failed, filesystem_layers


def _point(rps: float, p99: float, errors: int = 0, shed: int = 0) -> dict:
    return {
        "rps": rps,
        "seconds": 10.0,
        "requests": int(rps * 10),
        "errors": errors,
        "non_2xx": errors,
        "shed": shed,
        "socket": 0,
        "wire": {"p50_ms": p99 / 4, "p99_ms": p99 / 2},
        "corrected": {"p50_ms": p99 / 4, "p99_ms": p99},
        "statuses": {"200": int(rps * 10)},
        "socket_errors": {},
    }


def _figures() -> dict:
    """A run that meets every goal."""
    service = {"open1": _point(200, 2.0), "c1": _point(900, 2.0), "c8": _point(2500, 6.0), "c32": _point(2600, 20.0)}
    baseline = {"open1": _point(200, 1.0), "c1": _point(2000, 1.0), "c8": _point(4000, 4.0), "c32": _point(4200, 10.0)}
    return {
        "variant": "cpu",
        "sizes": {"cpu": 300e6, "cuda": 2.0e9},
        "floor": {"loaded_bytes": 350e6},
        "cold_start_s": [1.2, 1.0, 1.3],
        "load": {"service": service, "baseline": baseline, "rate": 200},
        "pauses": {"service": {"longest_s": 0.004, "collections": 12}, "baseline": {"longest_s": 0.05}},
        "soak": {"errors": 0, "requests": 100000, "rss_growth": 0.02, "rss_start": 100e6, "rss_end": 102e6},
        "sigterm": {"lost": 0, "sent_before": 900, "in_flight": 8, "exit_s": 1.4, "exit_code": 0},
        "read_only": {"ok": True, "problems": []},
    }


def _by_goal(verdicts) -> dict[str, str]:
    return {v.goal.split(" (")[0]: v.status for v in verdicts}


def test_a_run_that_meets_every_goal_passes_all():
    """Every goal and check of a good run is PASS, and nothing fails."""
    verdicts = evaluate(_figures())
    assert {v.status for v in verdicts} == {"PASS"}
    assert len(verdicts) == 14
    assert failed(verdicts) == []


@pytest.mark.parametrize(
    ("change", "goal"),
    [
        (lambda f: f["sizes"].update(cpu=401e6), "CPU image size"),
        (lambda f: f["floor"].update(loaded_bytes=200e6), "CPU image / its floor"),
        (lambda f: f["sizes"].update(cuda=2.6e9), "CUDA image size"),
        (lambda f: f.update(cold_start_s=[1.4, 1.6, 1.7]), "cold start to ready"),
        (lambda f: f["load"]["service"]["open1"]["corrected"].update(p99_ms=5.1), "p99 at concurrency 1, corrected"),
        (lambda f: f["pauses"]["service"].update(longest_s=0.021), "longest pause of the worker"),
        (lambda f: f["load"]["service"]["c32"].update(rps=2000), "throughput at concurrency 32 / baseline"),
        (
            lambda f: f["load"]["service"]["c32"]["corrected"].update(p99_ms=31),
            "p99 at concurrency 32 / baseline, corrected",
        ),
        (lambda f: f["soak"].update(rss_growth=0.10), "resident memory growth in the soak"),
    ],
)
def test_a_performance_goal_missed_is_a_miss_not_a_failure(change, goal):
    """One figure past its goal makes that goal MISS, every other PASS, and the bench does not fail."""
    figures = _figures()
    change(figures)
    statuses = _by_goal(evaluate(figures))
    assert statuses.pop(goal) == "MISS"
    assert set(statuses.values()) == {"PASS"}
    assert failed(evaluate(figures)) == []


@pytest.mark.parametrize(
    ("change", "goal"),
    [
        (lambda f: f["load"]["service"]["c32"].update(errors=3, shed=3), "errors at every load point"),
        (lambda f: f["soak"].update(errors=1), "errors in the soak"),
        (lambda f: f["sigterm"].update(lost=2), "requests in flight at SIGTERM complete"),
        (lambda f: f["sigterm"].update(exit_s=10.5), "exit after SIGTERM"),
        (lambda f: f["sigterm"].update(exit_s=None, exit_code=None), "exit after SIGTERM"),
        (lambda f: f["sigterm"].update(exit_code=137), "exit after SIGTERM"),
        (lambda f: f["read_only"].update(ok=False, problems=["case 0: label 'a'"]), "serves the golden cases"),
    ],
)
def test_a_functional_check_that_fails_fails_the_bench(change, goal):
    """Errors, lost requests, a slow or unclean exit, a wrong answer read-only: FAIL, and failed() names it."""
    figures = _figures()
    change(figures)
    verdicts = evaluate(figures)
    assert [v.goal.split(" with")[0] for v in failed(verdicts)] == [goal]


def test_exit_code_143_is_clean():
    """A process that ends on SIGTERM with 128 + 15 exited by itself, not by SIGKILL."""
    figures = _figures()
    figures["sigterm"]["exit_code"] = 143
    assert _by_goal(evaluate(figures))["exit after SIGTERM"] == "PASS"


def test_sections_that_did_not_run_are_not_applicable():
    """No load, soak, SIGTERM or read-only figures (and a CUDA run: no CPU floor): n/a, never PASS or FAIL."""
    figures = {"variant": "cuda", "sizes": {"cpu": None, "cuda": 2.2e9}, "floor": {"loaded_bytes": 1e9}}
    statuses = _by_goal(evaluate(figures))
    assert statuses.pop("CUDA image size") == "PASS"
    assert set(statuses.values()) == {"n/a"}
    assert failed(evaluate(figures)) == []


def test_a_service_without_pause_metrics_is_not_applicable():
    """When /metrics has no classifier_gc_pause_max_seconds the pause goal says so instead of passing."""
    figures = _figures()
    figures["pauses"]["service"]["longest_s"] = None
    (verdict,) = [v for v in evaluate(figures) if v.goal.startswith("longest pause")]
    assert (verdict.status, verdict.measured) == ("n/a", "not exported")


def test_median_of_rounds_takes_medians_of_rates_and_sums_counts():
    """Rates and latencies: the median over rounds; requests, errors and statuses: the total."""
    rounds = [_point(100, 4.0, errors=1, shed=1), _point(300, 2.0), _point(200, 8.0)]
    rounds[0]["gc_longest_s"], rounds[2]["gc_longest_s"] = 0.002, 0.003
    result = bench.median_of_rounds(rounds)
    assert result["rps"] == 200
    assert result["corrected"]["p99_ms"] == 4.0
    assert result["wire"]["p99_ms"] == 2.0
    assert (result["requests"], result["errors"], result["shed"]) == (6000, 1, 1)
    assert result["statuses"] == {"200": 6000}
    assert result["gc_longest_s"] == 0.003
    assert result["rounds"] == 3


def test_median_of_rounds_without_wire_timing():
    """Rounds whose wire latency is unknown (None) give None, not an error."""
    rounds = [_point(100, 4.0), _point(100, 4.0)]
    for r in rounds:
        r["wire"] = None
    assert bench.median_of_rounds(rounds)["wire"] is None


METRICS = """# HELP classifier_gc_pause_seconds Garbage-collection pauses of the serving worker.
# TYPE classifier_gc_pause_seconds histogram
classifier_gc_pause_seconds_bucket{le="0.0001"} 3.0
classifier_gc_pause_seconds_bucket{le="+Inf"} 41.0
classifier_gc_pause_seconds_count 41.0
classifier_gc_pause_seconds_sum 0.0123
# HELP classifier_gc_pause_max_seconds The longest garbage-collection pause since start.
# TYPE classifier_gc_pause_max_seconds gauge
classifier_gc_pause_max_seconds{pid="12"} 0.0031
classifier_gc_pause_max_seconds{pid="13"} 0.0072
bentoml_service_request_total{endpoint="/predict",http_response_code="200"} 9.0
"""


def test_gc_pauses_are_read_from_prometheus_text():
    """The longest pause is the largest classifier_gc_pause_max_seconds sample; collections the _count."""
    assert bench.gc_pauses_from_metrics(METRICS) == {"longest_s": 0.0072, "collections": 41}


def test_gc_pauses_absent_are_none():
    """A /metrics without the service's pause metrics gives None for both."""
    assert bench.gc_pauses_from_metrics("up 1\n# comment\ngarbage line\n") == {"longest_s": None, "collections": None}


def test_prometheus_samples_parse_names_labels_and_values():
    """Labels with spaces, a timestamp, +Inf: each sample is (name, labels, value)."""
    samples = bench.prometheus_samples('a_total{path="/x y"} 3 1700000000\nb +Inf\n')
    assert samples == [("a_total", 'path="/x y"', 3.0), ("b", "", float("inf"))]


def test_pin_plan_gives_the_servers_one_cpu_and_the_generators_the_rest():
    """On two CPUs both servers share CPU 0 and wrk/Python get CPU 1; one CPU or --no-pin pins nothing."""
    plan = bench.pin_plan([1, 0])
    assert (plan["servers"], plan["generator"]) == ("0", [1])
    assert "--cpuset-cpus 0" in plan["text"]
    assert bench.pin_plan([0])["servers"] is None
    assert bench.pin_plan([0, 1, 2], enabled=False)["generator"] is None


def test_read_only_mounts_are_where_bentoml_writes():
    """/tmp and BENTOML_HOME's stores and Prometheus directory, never the Bento itself."""
    mounts = bench.read_only_mounts("/home/bentoml/")
    assert "/tmp" in mounts
    assert "/home/bentoml/prometheus_multiproc_dir" in mounts
    assert not any(m in ("/home/bentoml", "/home/bentoml/bento") for m in mounts)


def test_uncovered_writes_ignore_parents_and_covered_paths():
    """docker diff's changed parent directories are not writes; paths under a tmpfs are covered."""
    diff = "\n".join(
        [
            "C /home",
            "C /home/bentoml",
            "A /home/bentoml/prometheus_multiproc_dir",
            "A /home/bentoml/prometheus_multiproc_dir/gauge_max_12.db",
            "C /tmp",
            "A /tmp/bentoml-uds-x",
            "C /home/bentoml/bento/src/params.yaml",
            "A /var/cache/thing",
        ]
    )
    mounts = ["/tmp", "/home/bentoml/prometheus_multiproc_dir"]
    assert bench.uncovered_writes(diff, mounts) == ["/home/bentoml/bento/src/params.yaml", "/var/cache/thing"]
    assert bench.uncovered_writes("", mounts) == []


GOLDEN = {
    "class_names": ["malignant", "benign"],
    "cases": [
        {"features": [1.0], "expected_label": "benign", "probabilities": {"malignant": 0.1, "benign": 0.9}},
        {"features": [2.0], "expected_label": "malignant", "probabilities": {"malignant": 0.8, "benign": 0.2}},
    ],
}


def _answers() -> list[dict]:
    return [
        {"label": c["expected_label"], "probabilities": dict(c["probabilities"]), "model_version": "v1"}
        for c in GOLDEN["cases"]
    ]


def test_golden_answers_within_tolerance_are_correct():
    """Labels, version and probabilities within 1e-4 of the golden cases: no problem."""
    answers = _answers()
    answers[0]["probabilities"]["benign"] += 5e-5
    assert bench.golden_problems(answers, GOLDEN, "v1") == []


def test_golden_differences_are_named():
    """A wrong label, version, probability or count is one problem line each."""
    answers = _answers()
    answers[1]["label"] = "benign"
    answers[0]["probabilities"]["malignant"] = 0.2
    problems = bench.golden_problems(answers, GOLDEN, "v2")
    assert len(problems) == 4  # two versions, one label, one probability
    assert any("case 1: label 'benign'" in p for p in problems)
    assert bench.golden_problems(answers[:1], GOLDEN, "v1")[0].startswith("expected 2 predictions, got [")


def test_perturbed_onnx_is_another_file_with_the_same_answers():
    """The model-only rebuild's model: different bytes, outputs equal to float32 precision."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2) / 7, "w")
    bias = numpy_helper.from_array(np.array([0.5, -0.5], dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["features", "w", "b"], ["probabilities"])],
        "tiny",
        [helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [None, 2])],
        [weights, bias],
    )
    original = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    changed = bench.perturbed_onnx(original)
    assert changed != original
    rows = np.ones((1, 3), dtype=np.float32)
    outputs = [ort.InferenceSession(m).run(None, {"features": rows})[0] for m in (original, changed)]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6)


def test_markdown_lists_every_goal_and_the_load_table():
    """build/bench.md (docs/figures.md's tables) has one row per goal and one per point and server."""
    figures = _figures()
    figures.update(image="img:1-cpu", pinning="nothing pinned")
    text = bench.markdown(figures, evaluate(figures))
    assert text.count("| PASS |") == 14
    assert "| c=32 wrk | baseline | 4200 |" in text
    assert "corrected:" in text


def test_quick_shortens_everything_and_skips_soak_and_rebuilds():
    """--quick: short points, one round, no soak, no rebuilds."""
    args = bench.parse_args(["--quick"])
    assert (args.seconds, args.rounds, args.soak_seconds, args.skip_rebuilds) == (3, 1, 0, True)
    assert bench.parse_args([]).soak_seconds == 600
    with pytest.raises(SystemExit):
        bench.parse_args(["--rounds", "0"])


def test_the_probes_are_valid_python():
    """FLOOR_PROBE and RSS_PROBE run inside the image with `python -c`: they must at least compile."""
    compile(bench.FLOOR_PROBE, "floor-probe", "exec")
    compile(bench.RSS_PROBE, "rss-probe", "exec")


def test_evaluate_does_not_change_its_input():
    """evaluate() is pure: the figures written to bench.json are the ones measured."""
    figures = _figures()
    before = copy.deepcopy(figures)
    evaluate(figures)
    assert figures == before


def test_metadata_instructions_make_no_layer():
    """ENV, USER, HEALTHCHECK... rows are dropped; the base import, RUN and COPY rows stay."""
    history = [
        {"created_by": "", "size": 100},
        {"created_by": "ENV LANG=C.UTF-8", "size": 0},
        {"created_by": "/bin/sh -c #(nop)  USER 10001", "size": 0},
        {"created_by": "RUN |1 X=1 /bin/sh -c pip install", "size": 50},
        {"created_by": "COPY build/bento/models /m # buildkit", "size": 5},
        {"created_by": 'HEALTHCHECK &{["CMD"]}', "size": 0},
    ]
    assert [row["size"] for row in filesystem_layers(history)] == [100, 50, 5]
