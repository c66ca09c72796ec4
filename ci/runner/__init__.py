"""Scripts the workflow runs on the runner's own Python, outside the locked environment: standard
library only (tests/ci/test_layout.py runs each on a bare `python -S`). Each adds the checkout to
sys.path when run as a file, and imports nothing from ci/ but the standard-library modules
ci/records.py, ci/text.py and ci/publish/login.py.

summary: the job summary (and the main job's terminal summary); dvc_outputs: the DVC outputs handed
between jobs; gate: the gate job's verdict over the others; signing: cosign around the pushed digest.
"""
