"""Which TensorFlow the image runs, whether its CUDA libraries load, and what it says about the GPU.

These machines have no GPU: the CUDA image must start, serve on the CPU (the golden tests run
against it too) and say that it found no GPU. On a GPU host, `docker run --gpus all` makes the
same image log "GPU found".
"""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.container

# The libraries TensorFlow needs before it registers a GPU, in dependency order (the cuBLAS
# front end needs cuBLASLt; cuSPARSE and cuSOLVER need nvJitLink). Loading them needs no driver.
CUDA_LIBRARIES = (
    "cuda_runtime/lib/libcudart.so.12",
    "cublas/lib/libcublasLt.so.12",
    "cublas/lib/libcublas.so.12",
    "nvjitlink/lib/libnvJitLink.so.12",
    "cusparse/lib/libcusparse.so.12",
    "cufft/lib/libcufft.so.11",
    "curand/lib/libcurand.so.10",
    "cusolver/lib/libcusolver.so.11",
    "cuda_nvrtc/lib/libnvrtc.so.12",
    "cudnn/lib/libcudnn.so.9",
)
PROBE = """
import ctypes, json, os, site, sys
import tensorflow as tf
info = tf.sysconfig.get_build_info()
loaded, errors = [], {}
base = os.path.join(site.getsitepackages()[0], "nvidia")
for rel in sys.argv[1:]:
    try:
        ctypes.CDLL(os.path.join(base, rel), mode=ctypes.RTLD_GLOBAL)
        loaded.append(rel)
    except OSError as exc:
        errors[rel] = str(exc)
print(json.dumps({"cuda_build": bool(info.get("is_cuda_build")), "cuda_version": info.get("cuda_version"),
                  "cudnn_version": info.get("cudnn_version"), "loaded": loaded, "errors": errors,
                  "nvcc": os.path.isdir(os.path.join(base, "cuda_nvcc"))}))
"""


@pytest.fixture(scope="module", name="probe")
def fixture_probe(docker, image) -> dict:
    """Run PROBE with the image's own Python (no GPU, no network)."""
    proc = subprocess.run(
        [docker, "run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python",
         "-e", "TF_CPP_MIN_LOG_LEVEL=3", image["ref"], "-c", PROBE, *CUDA_LIBRARIES],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_tensorflow_build_matches_the_variant(image, probe):
    """The CUDA image runs a CUDA build of TensorFlow (CUDA 12, cuDNN 9); the CPU image does not."""
    if image["variant"] == "cuda":
        assert probe["cuda_build"] is True
        assert str(probe["cuda_version"]).startswith("12")
        assert str(probe["cudnn_version"]).startswith("9")
    else:
        assert probe["cuda_build"] is False


def test_cuda_libraries_load_in_the_cuda_image(image, probe):
    """Every library TensorFlow needs to register a GPU loads in the CUDA image, and no compiler ships."""
    if image["variant"] != "cuda":
        pytest.skip("the CPU image has no CUDA libraries by design")
    assert probe["errors"] == {}
    assert probe["loaded"] == list(CUDA_LIBRARIES)
    assert probe["nvcc"] is False


def test_the_service_says_where_it_runs(server, image):
    """Without a GPU the CUDA image logs 'no GPU found'; the CPU image logs its CPU build."""
    records = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    messages = [r["message"] for r in records if r.get("logger") == "bentoml.classifier"]
    if image["variant"] == "cuda":
        assert any(m.startswith("no GPU found: serving on the CPU") for m in messages), messages
    else:
        assert "CPU build of TensorFlow: serving on the CPU" in messages
