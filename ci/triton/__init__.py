"""`nox -s triton`: the DVC stage's Triton model repository on a real Triton server, tested over HTTP and gRPC.

repository.py derives the Python-backend twin of the `onnxruntime_onnx` repository (the server the
nvidia-pytriton wheel ships has no ONNX Runtime backend), model.py is that twin's model (it runs
inside Triton's Python backend), server.py starts and stops a server (the wheel's binary here, the
official image pinned by digest in GitHub Actions), bench.py measures HTTP against gRPC, and run.py
is what the session runs. docs/triton.md explains the choices.
"""
