"""Which ONNX Runtime the image runs, whether its CUDA provider's libraries load, and what it says about the GPU.

These machines have no GPU: the CUDA image must start, serve on the CPU (the golden tests run
against it too) and say that it found no GPU. On a GPU host, `docker run --gpus all` makes the
same image log "serving on CUDAExecutionProvider".
"""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.container

# What ONNX Runtime's CUDA provider loads, relative to site-packages/nvidia, in dependency order:
# the libraries libonnxruntime_providers_cuda.so links (CUDA 13), then cuDNN 9 and the sub-libraries
# cuDNN opens itself. Loading them needs no driver; only libcuda.so.1 comes from the host (and
# libcudnn_engines_runtime_compiled.so.9 links it directly, so it cannot load here: it is left out).
CUDA_LIBRARIES = (
    "cu13/lib/libcudart.so.13",
    "cu13/lib/libcublasLt.so.13",
    "cu13/lib/libcublas.so.13",
    "cu13/lib/libcurand.so.10",
    "cu13/lib/libnvrtc.so.13",
    "cudnn/lib/libcudnn.so.9",
    "cudnn/lib/libcudnn_graph.so.9",
    "cudnn/lib/libcudnn_ops.so.9",
    "cudnn/lib/libcudnn_cnn.so.9",
    "cudnn/lib/libcudnn_adv.so.9",
    "cudnn/lib/libcudnn_engines_precompiled.so.9",
    "cudnn/lib/libcudnn_heuristic.so.9",
)
PROBE = """
import ctypes, importlib.metadata as md, json, os, site, sys
import onnxruntime as ort
loaded, errors = [], {}
base = os.path.join(site.getsitepackages()[0], "nvidia")
for rel in sys.argv[1:]:
    try:
        ctypes.CDLL(os.path.join(base, rel), mode=ctypes.RTLD_GLOBAL)
        loaded.append(rel)
    except OSError as exc:
        errors[rel] = str(exc)
provider = os.path.join(os.path.dirname(ort.__file__), "capi", "libonnxruntime_providers_cuda.so")
provider_error = None
if os.path.isfile(provider):
    try:
        ctypes.CDLL(provider)
    except OSError as exc:
        provider_error = str(exc)
dists = {d.metadata["Name"].lower() for d in md.distributions()}
print(json.dumps({"providers": ort.get_available_providers(), "device": ort.get_device(),
                  "loaded": loaded, "errors": errors, "provider_error": provider_error,
                  "tensorflow": any(n.startswith(("tensorflow", "keras")) for n in dists),
                  "onnxruntime": sorted(n for n in dists if n.startswith("onnxruntime"))}))
"""


@pytest.fixture(scope="module", name="probe")
def fixture_probe(docker, image) -> dict:
    """Run PROBE with the image's own Python (no GPU, no network)."""
    libraries = CUDA_LIBRARIES if image["variant"] == "cuda" else ()
    proc = subprocess.run(
        [docker, "run", "--rm", "--network", "none", "--entrypoint", "/opt/venv/bin/python",
         image["ref"], "-c", PROBE, *libraries],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_onnx_runtime_build_matches_the_variant(image, probe):
    """The CUDA image runs onnxruntime-gpu (CUDA provider built in); the CPU image plain onnxruntime.
    Neither carries TensorFlow or Keras."""
    assert probe["tensorflow"] is False
    if image["variant"] == "cuda":
        assert probe["onnxruntime"] == ["onnxruntime-gpu"]
        assert "CUDAExecutionProvider" in probe["providers"]
        assert probe["device"] == "GPU"
    else:
        assert probe["onnxruntime"] == ["onnxruntime"]
        assert probe["providers"] == ["AzureExecutionProvider", "CPUExecutionProvider"] or probe["providers"] == [
            "CPUExecutionProvider"
        ]


def test_cuda_provider_libraries_load_in_the_cuda_image(image, probe):
    """Every library the CUDA provider needs loads in the CUDA image; the provider itself then fails
    only for want of the driver (libcuda.so.1, which `--gpus` mounts from the host)."""
    if image["variant"] != "cuda":
        pytest.skip("the CPU image has no CUDA libraries by design")
    assert probe["errors"] == {}
    assert probe["loaded"] == list(CUDA_LIBRARIES)
    assert probe["provider_error"] is not None
    assert "libcuda.so.1" in probe["provider_error"], probe["provider_error"]


def test_the_service_says_where_it_runs(server, image):
    """Without a GPU the CUDA image warns 'no GPU found' and serves on the CPU; the CPU image says CPU."""
    records = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    messages = [r["message"] for r in records if r.get("logger") == "bentoml.classifier"]
    assert "serving on CPUExecutionProvider" in messages, messages
    if image["variant"] == "cuda":
        assert any(m.startswith("no GPU found: serving on the CPU") for m in messages), messages
    else:
        assert not any(m.startswith("no GPU found") for m in messages), messages
