"""`nox -s bench`: the service measured beside a bare ONNX Runtime server (baseline) with wrk driven
by loadgen; run prints every figure against its goal."""
