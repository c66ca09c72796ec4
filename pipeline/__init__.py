"""The DVC training pipeline: prepare -> train -> evaluate -> export -> package.

Each stage is a module with a pure, documented function that the tests call directly and a thin
`main()` that `dvc repro` runs (`python -m pipeline.<stage>`). Settings come from `params.yaml`;
artifact paths from `pipeline.artifacts`.
"""

import os

from pipeline.numerics import pin_cpu_kernels

# Before any stage imports numpy or TensorFlow: they read these settings when they load.
CPU_KERNELS_UNPINNED = pin_cpu_kernels()
# ONNX Runtime (the export stage's gate) sends usage events to Microsoft unless told not to.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
