"""Scripts the workflow runs on the runner's own Python, outside the locked environment: standard
library only (tests/ci/runner/test_runner_stdlib.py keeps them so). Each adds the checkout to sys.path
when run as a file, and imports nothing from ci/ but ci/records.py, which is standard library too.

summary: the job summary (and the main job's terminal summary); dvc_outputs: the DVC outputs handed
between jobs; gate: the gate job's verdict over the others; signing: cosign around the pushed digest.
"""
