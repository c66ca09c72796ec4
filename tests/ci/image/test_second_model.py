"""A second model through the one plug-in point: scikit-learn's iris, its own service, its own Bento.

docs/adapting.md lists the files a new model touches. This test does what it says in a project of
its own (a temporary directory): trains a logistic regression on iris, writes it as ONNX with the
manifest the pipeline's last stage writes, adds a service module and a Dockerfile, points params.yaml
`bento` at them, and builds the Bento with the same command the image build runs
(`python -m ci.image.bento`). Then it loads the built Bento's service from the Bento alone (its src/
and its model store) and asks it for predictions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ci.project import ROOT, SERVE_LOCK_NAME, bento_spec

pytestmark = pytest.mark.slow

FIXTURE = ROOT / "tests" / "fixtures" / "iris" / "service.py"
DESCRIPTION = "Iris species from four measurements (scikit-learn, served as ONNX)."
PLUG_IN = {  # params.yaml `bento` of the iris project: everything ci/ is told about the model
    "service": "bentos.iris.service:Iris",
    "sources": ["bentos/__init__.py", "bentos/iris/*.py"],
    "dockerfile": "bentos/iris/Dockerfile",
    "framework": "sklearn-onnx",
    "description": DESCRIPTION,
}


def iris_onnx() -> tuple[bytes, list[str], np.ndarray, np.ndarray]:
    """A logistic regression trained on iris, as an ONNX graph (MatMul, Add, Softmax) with its weights.

    Returns the file's bytes, the class names, a few rows and scikit-learn's probabilities for them.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    model = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    weights = numpy_helper.from_array(model.coef_.T.astype(np.float32), "weights")
    bias = numpy_helper.from_array(model.intercept_.astype(np.float32), "bias")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "weights"], ["logits0"]),
            helper.make_node("Add", ["logits0", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "iris",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])],
        initializer=[weights, bias],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(proto)
    rows = data.data[::25]
    return proto.SerializeToString(), [str(n) for n in data.target_names], rows, model.predict_proba(rows)


def iris_project(root: Path) -> tuple[dict, np.ndarray, list[str]]:
    """The files docs/adapting.md says a new model touches, written under root; returns the manifest,
    some rows and scikit-learn's answers for them."""
    model_bytes, classes, rows, expected = iris_onnx()
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"input": rows.astype(np.float32)})
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)  # the ONNX file is the trained model
    sha = hashlib.sha256(model_bytes).hexdigest()
    manifest = {"name": "iris_classifier", "version": sha[:16], "sha256": sha, "model_file": "model.onnx"}
    manifest |= {"class_names": classes, "n_features": 4}
    (root / "models").mkdir(parents=True)
    (root / "models" / "model.onnx").write_bytes(model_bytes)
    (root / "models" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (root / "bentos" / "iris").mkdir(parents=True)
    (root / "bentos" / "__init__.py").write_text("")
    (root / "bentos" / "iris" / "__init__.py").write_text("")
    shutil.copy2(FIXTURE, root / "bentos" / "iris" / "service.py")
    shutil.copy2(bento_spec().dockerfile, root / "bentos" / "iris" / "Dockerfile")  # it serves any Bento
    shutil.copy2(ROOT / SERVE_LOCK_NAME, root / SERVE_LOCK_NAME)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["name"] = manifest["name"]
    params["serve"]["service"] = "iris_service"
    params["bento"] = PLUG_IN
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return manifest, rows, [classes[i] for i in expected.argmax(axis=1)]


def python(cwd: Path, code_or_module: list[str], env: dict[str, str]) -> str:
    """Run this environment's Python in cwd with the checkout's ci/ importable; its stdout, or fail with its stderr."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "true", **env}
    out = subprocess.run([sys.executable, *code_or_module], cwd=cwd, env=full, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_a_second_model_builds_its_own_bento_through_params_yaml(tmp_path):
    """Iris plugged in through params.yaml `bento` alone gives a Bento of its service, its sources, its
    model (by content hash, with the framework label), its description, and that Bento serves iris."""
    root, out = tmp_path / "iris-project", tmp_path / "bento"
    manifest, rows, expected = iris_project(root)
    spec = bento_spec(root)
    assert spec.model_file(manifest) == root / "models" / "model.onnx"

    printed = python(
        root,
        ["-m", "ci.image.bento", "--root", str(root), "--out", str(out)],
        {"BENTOML_HOME": str(tmp_path / "store")},
    )
    model_tag = f"iris_classifier:{manifest['version']}"
    bento_tag, digest = printed.split()[-2:]
    assert bento_tag.startswith(f"iris_service:{manifest['version']}-")
    assert digest.startswith("sha256:")

    built = yaml.safe_load((out / "bento.yaml").read_text())
    assert built["name"] == "iris_service"
    assert built["service"] == PLUG_IN["service"]
    assert (out / "README.md").read_text() == DESCRIPTION  # where BentoML keeps a Bento's description
    assert [m["tag"] for m in built["models"]] == [model_tag]
    src = {p.relative_to(out / "src").as_posix() for p in (out / "src").rglob("*") if p.is_file()}
    assert {"bentos/iris/service.py", "bentos/iris/__init__.py", "bentos/__init__.py", "params.yaml"} <= src
    assert not any(name.startswith("bentos/classifier") for name in src)
    stored = out / "models" / "iris_classifier" / manifest["version"]
    assert hashlib.sha256((stored / "model.onnx").read_bytes()).hexdigest() == manifest["sha256"]
    assert yaml.safe_load((stored / "model.yaml").read_text())["labels"] == {"framework": "sklearn-onnx"}

    # The Bento alone serves: its src/ on the path, its own model store, the model pinned by tag.
    serve = (
        "import json, sys\n"
        "from bentos.iris.service import Iris\n"
        "iris = Iris.inner()\n"
        "print(json.dumps(iris.predict(json.loads(sys.argv[1]))))\n"
    )
    answer = python(
        out / "src", ["-c", serve, json.dumps(rows.tolist())], {"BENTOML_HOME": str(out), "MODEL_TAG": model_tag}
    )
    assert json.loads(answer.splitlines()[-1]) == expected
