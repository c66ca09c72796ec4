"""The DVC training pipeline: prepare -> train -> evaluate -> export -> package.

Each stage is a module with a pure, documented function that the tests call directly and a thin
`main()` that `dvc repro` runs (`python -m pipeline.<stage>`). Settings come from `params.yaml`;
artifact paths from `pipeline.artifacts`.
"""

from pipeline.numerics import pin_cpu_kernels

# Before any stage imports numpy or TensorFlow: they read these settings when they load.
CPU_KERNELS_UNPINNED = pin_cpu_kernels()
